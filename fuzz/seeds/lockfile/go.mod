module example.com/svc

go 1.22

require (
	github.com/gorilla/mux v1.8.1
	golang.org/x/net v0.24.0 // indirect
)

require github.com/pkg/errors v0.9.1
