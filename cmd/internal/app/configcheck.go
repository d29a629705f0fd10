package app

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"shadowbridge/cmd/internal/api"
)

// unknownKeys walks a YAML document beside the Go type it decodes into and returns every key the
// type has no field for, with its line, its path in YAML names and the closest known key: all
// of them at once, where the decoder stops at the first.
func unknownKeys(n *yaml.Node, t reflect.Type, path string) []error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch n.Kind {
	case yaml.DocumentNode:
		var errs []error
		for _, c := range n.Content {
			errs = append(errs, unknownKeys(c, t, path)...)
		}
		return errs
	case yaml.SequenceNode:
		if t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
			return nil // a type error: the decoder reports it
		}
		var errs []error
		for i, c := range n.Content {
			errs = append(errs, unknownKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return errs
	case yaml.MappingNode:
		return unknownMapKeys(n, t, path)
	}
	return nil
}

func unknownMapKeys(n *yaml.Node, t reflect.Type, path string) []error {
	if t.Kind() == reflect.Map {
		var errs []error
		for i := 1; i < len(n.Content); i += 2 {
			errs = append(errs, unknownKeys(n.Content[i], t.Elem(), join(path, n.Content[i-1].Value))...)
		}
		return errs
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	fields := yamlFields(t)
	var errs []error
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		ft, ok := fields[k.Value]
		if !ok {
			names := slices.Sorted(maps.Keys(fields)) // sorted: the same suggestion on a tie
			msg := fmt.Sprintf("line %d: unknown key %s", k.Line, join(path, k.Value))
			if s := api.Suggest(k.Value, names); s != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", s)
			}
			errs = append(errs, errors.New(msg))
			continue
		}
		errs = append(errs, unknownKeys(v, ft, join(path, k.Value))...)
	}
	return errs
}

// yamlFields maps a struct's YAML keys to their types (inlined structs' keys included).
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// typeError rewrites the decoder's complaints in the configuration's own words: YAML kinds, not
// Go types ("line 6: 5 is a number, want a string").
var typeError = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+) `(.*)` into (.+)$")

func yamlTypeErrors(err error) []error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []error{err}
	}
	var out []error
	for _, e := range te.Errors {
		m := typeError.FindStringSubmatch(e)
		if m == nil {
			out = append(out, errors.New(e))
			continue
		}
		out = append(out, fmt.Errorf("line %s: %s is %s, want %s", m[1], strconv.Quote(m[3]), yamlKind(m[2]), wantKind(m[4])))
	}
	return out
}

func yamlKind(tag string) string {
	switch tag {
	case "str":
		return "a string"
	case "int", "float":
		return "a number"
	case "bool":
		return "a boolean"
	case "seq":
		return "a list"
	case "map":
		return "a mapping"
	case "null":
		return "empty"
	}
	return "a " + tag
}

func wantKind(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "app."):
		if goType == "app.Duration" {
			return "a duration (30s, 5m, 24h)"
		}
		return "a mapping"
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"), strings.HasPrefix(goType, "float"):
		return "a number"
	}
	return goType
}
