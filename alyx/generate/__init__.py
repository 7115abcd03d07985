"""`alyx generate`: typed clients (TypeScript, Go, Python) and the function SDK from the project's schema."""
