package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"time"
)

// Auth is the caller: {id, email, role, verified}; nil in Ctx.Auth for an anonymous call.
type Auth struct {
	ID       string `json:"id"`
	Email    string `json:"email"`
	Role     string `json:"role"`
	Verified bool   `json:"verified"`
}

// Record is one record as the REST API returns it.
type Record = map[string]any

// ListResult is the list envelope of GET /api/collections/<name>.
type ListResult struct {
	Items      []Record `json:"items"`
	Page       int      `json:"page"`
	PerPage    int      `json:"perPage"`
	TotalItems int      `json:"totalItems"`
	TotalPages int      `json:"totalPages"`
}

// Event is a custom event for Events.Publish.
type Event struct {
	Type    string `json:"type"`
	Source  string `json:"source,omitempty"`
	Action  string `json:"action,omitempty"`
	Payload any    `json:"payload,omitempty"`
}

// Published is what Events.Publish answers: the functions the event was delivered to.
type Published struct {
	DeliveredTo []string `json:"delivered_to"`
}

// APIError is an error answer of the Alyx API: the status and {code, message, details}.
type APIError struct {
	Status  int            `json:"-"`
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details"`
}

func (e *APIError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// Ctx is one invocation's context: the caller, its input and trigger, the manifest env, and the
// Alyx API called as the caller through the mounted socket.
type Ctx struct {
	Auth      *Auth             // nil: anonymous; a trigger run sees its caller (the writer of a database hook, the publisher of an event)
	Input     json.RawMessage   // the trigger's payload; for an HTTP call its JSON body; nil when none
	Trigger   string            // http, database, webhook, schedule, event
	Env       map[string]string // the manifest's env (also in os.Getenv)
	Functions *Functions
	Events    *Events
	client    *client
}

// Context is the invocation context of r (the request a Handle receives). Outside the runtime it
// is an empty context whose API calls fail.
func Context(r *http.Request) *Ctx {
	if c, ok := r.Context().Value(invocationKey{}).(*Ctx); ok {
		return c
	}
	cl := &client{context: r.Context()}
	return &Ctx{Trigger: "http", Env: map[string]string{}, Functions: &Functions{cl}, Events: &Events{cl}, client: cl}
}

// JSON writes v as the JSON response with the status.
func JSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(normalize(v))
	if err != nil {
		status, data = 500, []byte(`{"error": {"code": "function_error", "message": "the response is not JSON"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

// BindInput decodes the invocation's input into v (an error when there is none).
func (c *Ctx) BindInput(v any) error {
	if c.Input == nil {
		return fmt.Errorf("this call has no input")
	}
	return json.Unmarshal(c.Input, v)
}

// Collections is one collection of the REST API.
func (c *Ctx) Collections(name string) *Collection {
	return &Collection{c, "/api/collections/" + url.PathEscape(name)}
}

// Request is the lower-level form: any API call as the caller; the answer parsed (JSON, else text).
func (c *Ctx) Request(method, path string, body any, query url.Values) (any, error) {
	var out any
	err := c.client.do(method, path, body, query, &out)
	return out, err
}

// Collection: list/get/create/update/delete, and bulk writes by filter (CEL text or a filter object).
type Collection struct {
	ctx  *Ctx
	path string
}

// List is one page; params: filter (text or object), sort, page, perPage, fields, expand, skipTotal, field: value.
func (c *Collection) List(params map[string]any) (*ListResult, error) {
	query := url.Values{}
	for k, v := range params {
		if v != nil {
			query.Set(k, queryValue(v))
		}
	}
	out := &ListResult{}
	return out, c.ctx.client.do("GET", c.path, nil, query, out)
}

func (c *Collection) Get(id string) (Record, error) {
	var out Record
	return out, c.ctx.client.do("GET", c.path+"/"+url.PathEscape(id), nil, nil, &out)
}

func (c *Collection) Create(data any) (Record, error) {
	var out Record
	return out, c.ctx.client.do("POST", c.path, data, nil, &out)
}

func (c *Collection) Update(id string, data any) (Record, error) {
	var out Record
	return out, c.ctx.client.do("PATCH", c.path+"/"+url.PathEscape(id), data, nil, &out)
}

func (c *Collection) Delete(id string) error {
	return c.ctx.client.do("DELETE", c.path+"/"+url.PathEscape(id), nil, nil, nil)
}

// DeleteMany deletes every record the filter matches that the caller may delete; the count.
func (c *Collection) DeleteMany(filter any) (int, error) {
	var out struct{ Count int }
	err := c.ctx.client.do("DELETE", c.path+"/bulk", map[string]any{"filter": filter}, nil, &out)
	return out.Count, err
}

// UpdateMany applies changes to every record the filter matches that the caller may update; the count.
func (c *Collection) UpdateMany(filter any, changes any) (int, error) {
	var out struct{ Count int }
	body := map[string]any{"filter": filter, "changes": changes}
	err := c.ctx.client.do("PATCH", c.path+"/bulk", body, nil, &out)
	return out.Count, err
}

// Functions.Invoke runs another function as the same caller: POST /api/functions/<name>.
type Functions struct{ client *client }

// Invoke sends input as the JSON body; the answer parsed (JSON, else text).
func (f *Functions) Invoke(name string, input any) (any, error) {
	if input == nil {
		input = map[string]any{}
	}
	var out any
	return out, f.client.do("POST", "/api/functions/"+url.PathEscape(name), input, nil, &out)
}

// Events.Publish sends a custom event: POST /api/events.
type Events struct{ client *client }

func (e *Events) Publish(event Event) (*Published, error) {
	out := &Published{}
	return out, e.client.do("POST", "/api/events", event, nil, out)
}

// client calls the API as the invocation's caller; its calls end with the invocation's deadline.
type client struct {
	socket  string
	token   string
	context context.Context
}

func (cl *client) do(method, path string, body any, query url.Values, out any) error {
	if cl.socket == "" || cl.token == "" {
		return fmt.Errorf("the Alyx API is not available to this function")
	}
	parent := cl.context
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, 30*time.Second)
	defer cancel()
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(normalize(body))
		if err != nil {
			return err
		}
		reader = bytes.NewReader(data)
	}
	target := "http://alyx" + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, reader)
	if err != nil {
		return err
	}
	req.Header.Set("X-Alyx-Callback-Token", cl.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	socket := cl.socket
	transport := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}
	defer transport.CloseIdleConnections()
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		var envelope struct{ Error APIError }
		_ = json.Unmarshal(raw, &envelope)
		envelope.Error.Status = resp.StatusCode
		return &envelope.Error
	}
	if out == nil || len(raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		if generic, ok := out.(*any); ok {
			*generic = string(raw)
			return nil
		}
		return err
	}
	return nil
}

// Time formats a time as the server stores and compares dates: RFC 3339 UTC with milliseconds.
func Time(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// normalize turns time.Time values inside maps and slices into Time(t) strings.
func normalize(v any) any {
	switch value := v.(type) {
	case time.Time:
		return Time(value)
	case *time.Time:
		if value == nil {
			return nil
		}
		return Time(*value)
	case map[string]any:
		out := make(map[string]any, len(value))
		for k, item := range value {
			out[k] = normalize(item)
		}
		return out
	case []any:
		out := make([]any, len(value))
		for i, item := range value {
			out[i] = normalize(item)
		}
		return out
	}
	return v
}

func queryValue(v any) string {
	switch value := v.(type) {
	case string:
		return value
	case bool:
		if value {
			return "true"
		}
		return "false"
	case time.Time:
		return Time(value)
	case []string:
		return strings.Join(value, ",")
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Map:
		data, _ := json.Marshal(normalize(v))
		return string(data)
	case reflect.Slice, reflect.Array:
		parts := make([]string, rv.Len())
		for i := range parts {
			parts[i] = fmt.Sprint(rv.Index(i).Interface())
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v)
}
