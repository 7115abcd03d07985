module github.com/watzon/alyx

go 1.19
