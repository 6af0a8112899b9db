// A program written against the client openapi-generator's `go` generator makes from
// openapi/openapi.json, run by `.ci/clients` against a running `snapgate demo` (its `export`
// lines in the environment).
//
// A round trip through the generated services and models: the providers, one demo account's
// snapshots, a create (202 and its operation), the operation long-polled with `wait` until it
// has succeeded, the snapshot it made, and a 404 decoded as a problem with its `code`.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	snapgate "snapgate.invalid/clients/snapgate-go"
)

func env(name string) string {
	value := os.Getenv(name)
	if value == "" {
		fail("%s is not set (source the demo's export lines)", name)
	}
	return value
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "go client check: "+format+"\n", args...)
	os.Exit(1)
}

func check(ok bool, format string, args ...interface{}) {
	if !ok {
		fail(format, args...)
	}
}

func must(err error, what string) {
	if err != nil {
		var apiErr *snapgate.GenericOpenAPIError
		if errors.As(err, &apiErr) {
			fail("%s: %v: %s", what, err, apiErr.Body())
		}
		fail("%s: %v", what, err)
	}
}

func main() {
	account := env("SNAPGATE_DEMO_KOYEB_ACCOUNT")
	source := strings.Split(env("SNAPGATE_DEMO_KOYEB_SOURCES"), ",")[0]

	cfg := snapgate.NewConfiguration()
	// The document's server is relative ("/"): the demo's address replaces it.
	cfg.Servers = snapgate.ServerConfigurations{{URL: env("SNAPGATE_URL")}}
	cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	api := snapgate.NewAPIClient(cfg)
	ctx := context.WithValue(context.Background(), snapgate.ContextAccessToken, env("SNAPGATE_TOKEN"))

	providers, _, err := api.ProvidersAPI.ListProviders(ctx).Execute()
	must(err, "list providers")
	var names []string
	for _, p := range providers.Items {
		names = append(names, string(p.Name))
	}
	sort.Strings(names)
	for _, kind := range []string{"hostinger", "hyperstack", "koyeb", "oktawave", "syminet"} {
		i := sort.SearchStrings(names, kind)
		check(i < len(names) && names[i] == kind, "provider %s missing: %v", kind, names)
	}
	fmt.Printf("providers: %s\n", strings.Join(names, ", "))

	// `account` is an array: the client must send it as a repeated query parameter.
	page, _, err := api.SnapshotsAPI.ListSnapshots(ctx).Account([]string{account}).Execute()
	must(err, "list snapshots")
	check(len(page.Errors) == 0, "errors: %+v", page.Errors)
	for _, s := range page.Items {
		check(s.Account == account, "a snapshot of another account: %s", s.Id)
	}
	fmt.Printf("listed %d snapshots of %s\n", len(page.Items), account)

	name := fmt.Sprintf("go-%d", time.Now().UnixNano())
	accepted, resp, err := api.SnapshotsAPI.CreateSnapshot(ctx).
		CreateSnapshot(*snapgate.NewCreateSnapshot(account, name, source)).Execute()
	must(err, "create snapshot")
	check(resp.StatusCode == http.StatusAccepted, "create answered %d", resp.StatusCode)
	operation := accepted.Operation
	check(operation.Kind == snapgate.OPERATIONKIND_CREATE, "operation kind %s", operation.Kind)
	fmt.Printf("create accepted: operation %s %s\n", operation.Id, operation.State)

	// Long-poll: each read waits up to 10 s for a change; the demo's simulated clouds finish a
	// create within seconds.
	for round := 0; round < 12 && operation.State != snapgate.OPERATIONSTATE_SUCCEEDED; round++ {
		check(operation.State != snapgate.OPERATIONSTATE_FAILED, "operation failed: %+v", operation.Error.Get())
		read, _, err := api.OperationsAPI.GetOperation(ctx, operation.Id).Wait(10).Execute()
		must(err, "get operation")
		operation = *read
	}
	check(operation.State == snapgate.OPERATIONSTATE_SUCCEEDED, "operation still %s", operation.State)
	snapshotID := operation.GetSnapshotId()
	check(snapshotID != "", "a succeeded create names its snapshot")
	fmt.Printf("operation %s: %s, snapshot %s\n", operation.Id, operation.State, snapshotID)

	snapshot, _, err := api.SnapshotsAPI.GetSnapshot(ctx, snapshotID).Execute()
	must(err, "get snapshot")
	check(snapshot.Id == snapshotID, "read back %s", snapshot.Id)
	check(snapshot.GetName() == name, "name %q", snapshot.GetName())
	check(snapshot.Account == account, "account %s", snapshot.Account)
	fmt.Printf("snapshot %s: %s\n", snapshot.Id, snapshot.Status)

	// A 404 comes back as an error carrying the decoded problem.
	_, resp, err = api.SnapshotsAPI.GetSnapshot(ctx, account+":go-no-such-snapshot").Execute()
	check(err != nil, "a missing snapshot was found")
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	check(status == http.StatusNotFound, "status %d: %v", status, err)
	var apiErr *snapgate.GenericOpenAPIError
	check(errors.As(err, &apiErr), "error %T: %v", err, err)
	problem, ok := apiErr.Model().(snapgate.Problem)
	check(ok, "error model %T: %s", apiErr.Model(), apiErr.Body())
	check(problem.Code == "snapshot_not_found", "code %s", problem.Code)
	check(problem.Status == http.StatusNotFound, "problem status %d", problem.Status)
	fmt.Printf("missing snapshot: %d %s\n", problem.Status, problem.Code)

	fmt.Println("go client check: ok")
}
