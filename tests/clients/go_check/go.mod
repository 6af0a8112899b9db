// A program written against the client openapi-generator's `go` generator makes from
// openapi/openapi.json. `.ci/clients` copies this directory and generates the client into its
// `client/` (module snapgate.invalid/clients/snapgate-go, a name for the replace below only),
// then builds both with the standard library alone: GOPROXY=off, nothing downloaded.
module snapgate.invalid/clients/gocheck

go 1.19

require snapgate.invalid/clients/snapgate-go v0.0.0

replace snapgate.invalid/clients/snapgate-go => ./client
