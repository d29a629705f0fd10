package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
)

// MaxBody is the largest request body accepted (1 MiB).
const MaxBody = 1 << 20

// ErrBadRequest is a request that cannot be decoded.
var ErrBadRequest = service.ErrBadRequest

// AddBody is the JSON body of prov.cmd.<resource>.add.
type AddBody struct {
	RequestID   string       `json:"requestId,omitempty"`
	ObjectClass string       `json:"objectClass"`
	Attributes  AttributeMap `json:"attributes"`
	Assigned    bool         `json:"assigned,omitempty"`
}

// ChangeBody is one attribute's change; Replace is a pointer so that "replace":[] (remove all
// values) differs from no replace at all.
type ChangeBody struct {
	Add     []any  `json:"add,omitempty"`
	Delete  []any  `json:"delete,omitempty"`
	Replace *[]any `json:"replace,omitempty"`
}

// ModifyBody is the JSON body of prov.cmd.<resource>.modify.
type ModifyBody struct {
	RequestID   string           `json:"requestId,omitempty"`
	ShadowID    string           `json:"shadowId,omitempty"`
	ObjectClass string           `json:"objectClass,omitempty"`
	Identifiers map[string][]any `json:"identifiers,omitempty"`
	Changes     ChangeMap        `json:"changes"`
}

// DeleteBody is the JSON body of prov.cmd.<resource>.delete.
type DeleteBody struct {
	RequestID   string           `json:"requestId,omitempty"`
	ShadowID    string           `json:"shadowId,omitempty"`
	ObjectClass string           `json:"objectClass,omitempty"`
	Identifiers map[string][]any `json:"identifiers,omitempty"`
}

// RefreshBody is the JSON body of prov.cmd.<resource>.refresh.
type RefreshBody struct {
	ShadowID   string `json:"shadowId,omitempty"`
	ForceRetry bool   `json:"forceRetry,omitempty"`
}

// ConfirmBody is the JSON body of prov.cmd.<resource>.confirm (and of AMQP confirmations).
// errorCategory (already-exists, not-found, ...) says why an operation failed and drives
// discovery; attributes are the existing account's, with already-exists.
type ConfirmBody struct {
	OperationID        string           `json:"operationId"`
	ResultStatus       string           `json:"resultStatus"`
	Message            string           `json:"message,omitempty"`
	PrimaryIdentifiers map[string][]any `json:"primaryIdentifiers,omitempty"`
	ErrorCategory      string           `json:"errorCategory,omitempty"`
	Attributes         map[string][]any `json:"attributes,omitempty"`
}

// NotifyBody is the JSON body of prov.cmd.<resource>.notify (and of the resource's AMQP
// notification address): a change the target made, or saw, to one of its accounts. change is
// add (attributes are all the account's), modify (attributes are what changed; [] removes one)
// or delete; the account is named by primaryIdentifiers, or by its secondary identifier in
// attributes. observedAt (RFC 3339, optional) is when the target read the account: a shadow that
// changed after it is not compared with a picture older than that change.
type NotifyBody struct {
	RequestID          string           `json:"requestId,omitempty"`
	Change             string           `json:"change"`
	ObjectClass        string           `json:"objectClass"`
	PrimaryIdentifiers map[string][]any `json:"primaryIdentifiers,omitempty"`
	Attributes         map[string][]any `json:"attributes,omitempty"`
	ObservedAt         string           `json:"observedAt,omitempty"`
}

// ReconcileBody is the JSON body of prov.cmd.<resource>.reconcile: start a reconciliation run (or
// join the one going).
type ReconcileBody struct {
	RequestID string `json:"requestId,omitempty"`
}

// PageBody is the JSON body of prov.cmd.<resource>.page (and, with the same fields, of a page on
// the confirmation address): one page of the target's answer to a list request. page counts
// from 1; last marks the final page.
type PageBody struct {
	ReconciliationID string            `json:"reconciliationId"`
	Page             int               `json:"page"`
	Last             bool              `json:"last,omitempty"`
	Accounts         []ListedAccountJS `json:"accounts"`
}

// ListedAccountJS is one account of a page: its identifiers and all its attributes, and, when
// the target says, the sequence of the last request of its shadow it processed.
type ListedAccountJS struct {
	PrimaryIdentifiers map[string][]any `json:"primaryIdentifiers,omitempty"`
	Attributes         map[string][]any `json:"attributes"`
	AppliedSequence    int64            `json:"appliedSequence,omitempty"`
}

// CancelBody is the JSON body of prov.cmd.<resource>.cancel.
type CancelBody struct {
	OperationID string `json:"operationId"`
}

// MaintenanceBody is the JSON body of prov.cmd.<resource>.maintenance: maintenance true puts the
// resource in maintenance (nothing is sent, no attempts are counted), false ends it.
type MaintenanceBody struct {
	Maintenance *bool  `json:"maintenance"`
	Reason      string `json:"reason,omitempty"`
}

// ShadowQuery is the body of prov.query.shadow.
type ShadowQuery struct {
	ShadowID string `json:"shadowId"`
	AsOf     string `json:"asOf,omitempty"`
}

// PendingQuery is the body of prov.query.pending: a page of at most Limit shadows (default
// DefaultPendingLimit, at most MaxPendingLimit) after the cursor After (the reply's "next").
type PendingQuery struct {
	Resource string `json:"resource,omitempty"`
	Limit    int    `json:"limit,omitempty"`
	After    string `json:"after,omitempty"`
}

// Page sizes of prov.query.pending.
const (
	DefaultPendingLimit = 100
	MaxPendingLimit     = 1000
)

// ResourceQuery is the body of prov.query.resource: a resource's availability and its last changes.
type ResourceQuery struct {
	Resource string `json:"resource"`
}

// HistoryQuery is the body of prov.query.history.
type HistoryQuery struct {
	ShadowID string `json:"shadowId"`
}

// Decode parses a request body strictly: valid UTF-8, at most MaxBody bytes, one JSON object, no
// unknown fields (with a suggestion when a field looks like a typo), numbers kept exact. An
// empty body decodes as {}.
func Decode[T any](data []byte) (T, error) {
	var v T
	if len(data) > MaxBody {
		return v, fmt.Errorf("%w: body is %d bytes, the limit is %d", ErrBadRequest, len(data), MaxBody)
	}
	if !utf8.Valid(data) {
		return v, fmt.Errorf("%w: body is not valid UTF-8", ErrBadRequest)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		data = []byte("{}")
	}
	if err := checkKeys(data, fieldNames(v)); err != nil {
		return v, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return v, fmt.Errorf("%w: %s", ErrBadRequest, describe(err, v))
	}
	if _, err := dec.Token(); err != io.EOF {
		return v, fmt.Errorf("%w: unexpected data after the JSON object", ErrBadRequest)
	}
	return v, nil
}

// checkKeys refuses what encoding/json would accept silently: a key given twice in one object
// (the last one would win) and, at the top level, a field name that matches a known one only
// when case is ignored ("requestID" would be taken as "requestId"). Malformed JSON is left to
// the decoder, which describes it better. It scans the bytes once, allocating only for the keys
// with escapes and for objects with many keys: encoding/json's token reader, which it used
// before, cost more than the decoding itself (2% of the service's CPU under load).
func checkKeys(data []byte, known []string) error {
	if !json.Valid(data) {
		return nil
	}
	type frame struct {
		object bool
		keys   []string        // the object's keys so far (few: a slice)
		many   map[string]bool // past 16 keys
	}
	var stack []frame
	expectKey := false // the next string, if any, is a key of the innermost object
	for i := 0; i < len(data); {
		switch c := data[i]; c {
		case '{', '[':
			stack = append(stack, frame{object: c == '{'})
			expectKey = c == '{'
			i++
		case '}', ']':
			if len(stack) == 0 {
				return nil
			}
			stack = stack[:len(stack)-1]
			expectKey = false
			i++
		case ',':
			expectKey = len(stack) > 0 && stack[len(stack)-1].object
			i++
		case '"':
			end, ok := stringEnd(data, i)
			if !ok {
				return nil
			}
			if expectKey {
				key := string(data[i+1 : end-1])
				if bytes.IndexByte(data[i:end], '\\') >= 0 {
					if json.Unmarshal(data[i:end], &key) != nil {
						return nil
					}
				}
				top := &stack[len(stack)-1]
				if top.many != nil && top.many[key] || top.many == nil && slices.Contains(top.keys, key) {
					return fmt.Errorf("key %q appears twice in one object", key)
				}
				if top.many == nil && len(top.keys) < 16 {
					top.keys = append(top.keys, key)
				} else {
					if top.many == nil {
						top.many = make(map[string]bool, 32)
						for _, k := range top.keys {
							top.many[k] = true
						}
					}
					top.many[key] = true
				}
				if len(stack) == 1 {
					for _, k := range known {
						if key != k && strings.EqualFold(key, k) {
							return fmt.Errorf("unknown field %q (did you mean %q? names are case-sensitive)", key, k)
						}
					}
				}
				expectKey = false
			}
			i = end
		default: // white space, ':', numbers, true, false, null
			i++
		}
	}
	return nil
}

// stringEnd returns the offset just past the JSON string that starts at data[i] (a quote).
func stringEnd(data []byte, i int) (int, bool) {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return 0, false
}

func describe(err error, v any) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return fmt.Sprintf("expected a JSON object, got %s", typeErr.Value)
		}
		return fmt.Sprintf("field %q: expected %s, got %s", field, jsonKind(typeErr.Type.String()), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("malformed JSON at byte %d: %v", syntaxErr.Offset, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end of input"
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		if s := Suggest(name, fieldNames(v)); s != "" {
			return fmt.Sprintf("unknown field %q (did you mean %q?)", name, s)
		}
		return fmt.Sprintf("unknown field %q (known: %s)", name, strings.Join(fieldNames(v), ", "))
	}
	return strings.TrimPrefix(msg, "json: ")
}

func jsonKind(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"), strings.HasPrefix(goType, "*[]"):
		return "an array"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "api."):
		return "an object"
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "a boolean"
	}
	return goType
}

func fieldNames(v any) []string {
	switch v.(type) {
	case AddBody:
		return []string{"requestId", "objectClass", "attributes", "assigned"}
	case ModifyBody:
		// Unknown fields inside a change are reported by name only, so suggest those too.
		return []string{"requestId", "shadowId", "objectClass", "identifiers", "changes", "add", "delete", "replace"}
	case DeleteBody:
		return []string{"requestId", "shadowId", "objectClass", "identifiers"}
	case RefreshBody:
		return []string{"shadowId", "forceRetry"}
	case ConfirmBody:
		return []string{"operationId", "resultStatus", "message", "primaryIdentifiers", "errorCategory", "attributes"}
	case ShadowQuery:
		return []string{"shadowId", "asOf"}
	case CancelBody:
		return []string{"operationId"}
	case ReconcileBody:
		return []string{"requestId"}
	case PageBody:
		return []string{"reconciliationId", "page", "last", "accounts", "primaryIdentifiers", "attributes", "appliedSequence"}
	case NotifyBody:
		return []string{"requestId", "change", "objectClass", "primaryIdentifiers", "attributes", "observedAt"}
	case MaintenanceBody:
		return []string{"maintenance", "reason"}
	case PendingQuery:
		return []string{"resource", "limit", "after"}
	case HistoryQuery:
		return []string{"shadowId"}
	case ResourceQuery:
		return []string{"resource"}
	case map[string]ChangeBody, ChangeBody:
		return []string{"add", "delete", "replace"}
	}
	return []string{"add", "delete", "replace"}
}

// suggest returns the known name closest to name if it is close enough to be a typo.
// Suggest returns the entry of known nearest to name, case aside and at most two edits away
// (the first of equals), or "": the "did you mean" of every refusal.
func Suggest(name string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		d := EditDistance(strings.ToLower(name), strings.ToLower(k))
		if d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// EditDistance is the Levenshtein distance of a and b (for "did you mean" suggestions).
func EditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// Values converts decoded JSON values into domain values: json.Number becomes int64 when it is an
// integer and float64 otherwise; strings and booleans stay; anything else is refused.
func Values(attr string, in []any) ([]any, error) {
	out := make([]any, 0, len(in))
	for _, v := range in {
		switch x := v.(type) {
		case json.Number:
			n, err := number(attr, string(x))
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		case string, bool:
			out = append(out, x)
		case nil:
			return nil, fmt.Errorf("%w: attribute %q: null is not a value", domain.ErrInvalidValue, attr)
		default:
			return nil, fmt.Errorf("%w: attribute %q: values must be strings, numbers or booleans, not %s", domain.ErrInvalidValue, attr, jsonKind(fmt.Sprintf("%T", v)))
		}
	}
	return out, nil
}

// AttributesFrom converts a decoded attribute map.
func AttributesFrom(in map[string][]any) (domain.Attributes, error) {
	if in == nil {
		return nil, nil
	}
	out := make(domain.Attributes, len(in))
	for k, vs := range in {
		v, err := Values(k, vs)
		if err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

// ChangesFrom converts decoded changes.
func ChangesFrom(in map[string]ChangeBody) (domain.Changes, error) {
	out := make(domain.Changes, len(in))
	for k, c := range in {
		var ch domain.AttributeChange
		var err error
		if ch.Add, err = Values(k, c.Add); err != nil {
			return nil, err
		}
		if ch.Delete, err = Values(k, c.Delete); err != nil {
			return nil, err
		}
		if c.Replace != nil {
			if ch.Replace, err = Values(k, *c.Replace); err != nil {
				return nil, err
			}
		}
		if len(ch.Add) == 0 {
			ch.Add = nil
		}
		if len(ch.Delete) == 0 {
			ch.Delete = nil
		}
		out[k] = ch
	}
	return out, nil
}

// number converts a JSON number without losing anything: an integer must fit int64; any other
// number must be exactly the decimal a float64 holds (as Java's double would print it, give or
// take trailing zeros). Anything else would be stored as a different value than was sent (a
// 30-digit integer rounded, 1e-400 turned into 0), so it is refused: send such values as strings.
func number(attr, lit string) (any, error) {
	if len(lit) > 64 {
		// No float64 needs more digits; a bound also keeps the exactness check below cheap.
		return nil, fmt.Errorf("%w: attribute %q: a number of %d characters (the limit is 64); send it as a string", domain.ErrInvalidValue, attr, len(lit))
	}
	if !strings.ContainsAny(lit, ".eE") {
		i, err := strconv.ParseInt(lit, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: attribute %q: integer %s does not fit in 64 bits; send it as a string to keep it exactly", domain.ErrInvalidValue, attr, lit)
		}
		return i, nil
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: attribute %q: number %s is out of range", domain.ErrInvalidValue, attr, lit)
	}
	if _, exp, _ := strings.Cut(strings.ToLower(lit), "e"); exp != "" {
		// 1e-99999999 parses as 0: refuse it before big.Rat would expand 10^99999999.
		if e, err := strconv.Atoi(exp); err != nil || e > 400 || e < -400 {
			return nil, fmt.Errorf("%w: attribute %q: number %s is out of range", domain.ErrInvalidValue, attr, lit)
		}
	}
	want, ok1 := new(big.Rat).SetString(lit)
	got, ok2 := new(big.Rat).SetString(strconv.FormatFloat(f, 'g', -1, 64))
	if !ok1 || !ok2 || want.Cmp(got) != 0 {
		return nil, fmt.Errorf("%w: attribute %q: number %s has more precision than a 64-bit float keeps (it would become %s); send it as a string to keep it exactly",
			domain.ErrInvalidValue, attr, lit, strconv.FormatFloat(f, 'g', -1, 64))
	}
	return f, nil
}
