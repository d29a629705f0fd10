package bridge

import (
	"encoding/json"
	"fmt"

	"shadowbridge/domain"
)

// Transformation names, as midPoint spells them.
const (
	SimplifiedJSON          = "simplifiedJson"
	SimplifiedQualifiedJSON = "simplifiedQualifiedJson"
	FullJSON                = "fullJson"
)

// simplifiedRequest is midPoint's simplifiedJson request, field order included.
type simplifiedRequest struct {
	Operation            domain.ChangeType           `json:"operation"`
	ObjectClass          string                      `json:"objectClass"`
	Attributes           map[string][]any            `json:"attributes,omitempty"`
	PrimaryIdentifiers   *map[string][]any           `json:"primaryIdentifiers,omitempty"`
	SecondaryIdentifiers *map[string][]any           `json:"secondaryIdentifiers,omitempty"`
	Changes              map[string]simplifiedChange `json:"changes,omitempty"`
}

type simplifiedChange struct {
	Add     []any  `json:"add,omitempty"`
	Delete  []any  `json:"delete,omitempty"`
	Replace *[]any `json:"replace,omitempty"` // present and empty: remove every value
}

// Transform renders a request in the named transformation. Only simplifiedJson exists so far;
// the others are refused as configuration errors rather than sent in the wrong shape.
func Transform(name string, r domain.TargetRequest) ([]byte, error) {
	switch name {
	case "", SimplifiedJSON:
	default:
		return nil, fmt.Errorf("%w: transformation %q is not supported yet (use %s)", domain.CategoryConfiguration, name, SimplifiedJSON)
	}
	out := simplifiedRequest{Operation: r.Operation, ObjectClass: r.ObjectClass}
	switch r.Operation {
	case domain.ChangeAdd:
		out.Attributes = orEmpty(r.Attributes)
	case domain.ChangeModify, domain.ChangeDelete:
		p, s := orEmpty(r.PrimaryIdentifiers), orEmpty(r.SecondaryIdentifiers)
		out.PrimaryIdentifiers, out.SecondaryIdentifiers = &p, &s
		if r.Operation == domain.ChangeModify {
			out.Changes = map[string]simplifiedChange{}
			for k, c := range r.Changes {
				sc := simplifiedChange{Add: c.Add, Delete: c.Delete}
				if c.Replace != nil {
					sc.Replace = &c.Replace
				}
				out.Changes[k] = sc
			}
		}
	}
	return json.Marshal(out)
}

func orEmpty(a domain.Attributes) map[string][]any {
	if a == nil {
		return map[string][]any{}
	}
	return a
}
