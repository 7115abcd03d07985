// Command alyx-go-runtime is the generic Go sandbox: it serves the runtime protocol until /__rt/init
// names a compiled function, then hands its socket over to that binary (exec, same process).
package main

import "github.com/watzon/alyx/pkg/runtime"

func main() { runtime.Serve(nil) }
