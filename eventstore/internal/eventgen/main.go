// Command eventgen writes eventstore/events_gen.go from the domain's shadow event structs
// (domain.ShadowEvent): for each event, the msgpack writer and reader of its fields (fast paths beside the reflective codec)
// and its JSON field table (the history's transcoder). An event field is then declared once, in
// domain/events.go; `go generate ./eventstore` rewrites the rest, and TestGeneratedCodeIsCurrent
// fails when it was not run.
//
// Each field's Go type and json options choose its kind (kinds); a field of a type without one
// stops the generator with an error naming it, rather than being left to a slower path unseen.
package main

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/format"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
)

func main() {
	out, err := generate("../domain")
	if err == nil {
		err = os.WriteFile("events_gen.go", out, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "eventgen:", err)
		os.Exit(1)
	}
}

// field is one struct field as the codecs see it.
type field struct {
	goName, name string // Go field name, json name
	kind         kind
	conv         string // the named type a string is converted to when read ("" for string)
}

// kind is how a field is written, read and transcoded to JSON.
type kind struct {
	json  string // the eventjson kind (kStr, ...)
	omit  string // the condition under which it is written ("" : always), with x.F for the field
	write string // the writer's statement(s), with x.F and N for the json name
	read  string // the reader's expression
}

// kindOf picks the kind of a field of type t with json options opts.
func kindOf(t types.Type, opts string) (kind, string, error) {
	omitEmpty, omitZero := strings.Contains(opts, "omitempty"), strings.Contains(opts, "omitzero")
	named := ""
	if n, ok := t.(*types.Named); ok {
		named = n.Obj().Pkg().Name() + "." + n.Obj().Name()
	}
	switch {
	case named == "time.Time" && omitZero:
		return kind{"kTimeOmitZero", "!x.F.IsZero()", `w.tm(N, x.F)`, "r.tm()"}, "", nil
	case named == "time.Time" && !omitEmpty:
		return kind{"kTime", "", `w.tm(N, x.F)`, "r.tm()"}, "", nil
	case named == "domain.Attributes" && omitEmpty:
		return kind{"kAttrsOmit", "len(x.F) > 0", "w.key(N)\nw.attrs(x.F)", "r.attrs()"}, "", nil
	case named == "domain.Attributes":
		return kind{"kAttrs", "", "w.key(N)\nw.attrs(x.F)", "r.attrs()"}, "", nil
	case named == "domain.Changes" && omitEmpty:
		return kind{"kChangesOmit", "len(x.F) > 0", "w.key(N)\nw.changes(x.F)", "r.changes()"}, "", nil
	case named == "domain.Changes":
		return kind{"kChanges", "", "w.key(N)\nw.changes(x.F)", "r.changes()"}, "", nil
	case named == "domain.OperationError" && !omitEmpty:
		return kind{"kOpError", "", "w.key(N)\nw.opError(x.F)", "r.opError()"}, "", nil
	case named == "domain.TargetRequest" && !omitEmpty:
		return kind{"kRequest", "", "w.key(N)\nw.targetRequest(x.F)", "r.targetRequest()"}, "", nil
	}
	switch u := t.Underlying().(type) {
	case *types.Basic:
		conv := ""
		if named != "" {
			conv = named
		}
		switch {
		case u.Kind() == types.String && omitEmpty:
			return kind{"kStrOmit", `x.F != ""`, "w.str(N, S(x.F))", "r.str()"}, conv, nil
		case u.Kind() == types.String:
			return kind{"kStr", "", "w.str(N, S(x.F))", "r.str()"}, conv, nil
		case (u.Kind() == types.Int || u.Kind() == types.Int64) && named == "":
			read := "r.int()"
			if u.Kind() == types.Int {
				read = "int(r.int())"
			}
			if omitEmpty {
				return kind{"kIntOmit", "x.F != 0", "w.num(N, int64(x.F))", read}, "", nil
			}
			return kind{"kInt", "", "w.num(N, int64(x.F))", read}, "", nil
		case u.Kind() == types.Bool && omitEmpty && named == "":
			return kind{"kBoolOmit", "x.F", "w.boolean(N, true)", "r.boolean()"}, "", nil
		}
	case *types.Slice:
		if b, ok := u.Elem().(*types.Basic); ok && b.Kind() == types.String && named == "" && omitEmpty {
			return kind{"kStrsOmit", "len(x.F) > 0", "w.strs(N, x.F)", "r.strs()"}, "", nil
		}
	}
	return kind{}, "", fmt.Errorf("no codec kind for type %s with json options %q", t, opts)
}

// event is one event struct.
type event struct {
	name   string
	fields []field
}

// events type-checks the domain package in dir and returns its shadow event structs (the named
// structs implementing domain.ShadowEvent), in the order they are declared.
func events(dir string) ([]event, error) {
	fset := token.NewFileSet()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	var files []*ast.File
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, n, nil, 0)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	conf := types.Config{Importer: importer.ForCompiler(fset, "source", nil)}
	pkg, err := conf.Check("shadowbridge/domain", fset, files, nil)
	if err != nil {
		return nil, fmt.Errorf("type-check the domain: %w", err)
	}
	iface, ok := pkg.Scope().Lookup("ShadowEvent").Type().Underlying().(*types.Interface)
	if !ok {
		return nil, fmt.Errorf("domain.ShadowEvent is not an interface")
	}
	type found struct {
		pos token.Pos
		ev  event
	}
	var all []found
	for _, name := range pkg.Scope().Names() {
		tn, ok := pkg.Scope().Lookup(name).(*types.TypeName)
		if !ok || !tn.Exported() {
			continue
		}
		st, ok := tn.Type().Underlying().(*types.Struct)
		if !ok || !types.Implements(tn.Type(), iface) {
			continue
		}
		ev := event{name: name}
		for i := range st.NumFields() {
			f := st.Field(i)
			tag, ok := reflect.StructTag(st.Tag(i)).Lookup("json")
			if !ok || tag == "-" {
				return nil, fmt.Errorf("%s.%s: every event field needs a json name", name, f.Name())
			}
			jsonName, opts, _ := strings.Cut(tag, ",")
			k, conv, err := kindOf(f.Type(), opts)
			if err != nil {
				return nil, fmt.Errorf("%s.%s: %w", name, f.Name(), err)
			}
			ev.fields = append(ev.fields, field{goName: f.Name(), name: jsonName, kind: k, conv: conv})
		}
		all = append(all, found{tn.Pos(), ev})
	}
	slices.SortFunc(all, func(a, b found) int { return cmpPos(fset, a.pos, b.pos) })
	out := make([]event, len(all))
	for i, f := range all {
		out[i] = f.ev
	}
	return out, nil
}

func cmpPos(fset *token.FileSet, a, b token.Pos) int {
	pa, pb := fset.Position(a), fset.Position(b)
	if c := strings.Compare(pa.Filename, pb.Filename); c != 0 {
		return c
	}
	return pa.Offset - pb.Offset
}

// generate returns the formatted source of events_gen.go for the domain package in dir.
func generate(dir string) ([]byte, error) {
	evs, err := events(dir)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("// Code generated by eventgen from the domain's event structs; DO NOT EDIT.\n\npackage eventstore\n\n")
	p("import \"shadowbridge/domain\"\n\n")
	p("// event writes a known event's fields (false: not an event of this build; the reflective encoder writes it).\n")
	p("func (w *writer) event(e domain.Event) bool {\n\tswitch x := e.(type) {\n")
	for _, ev := range evs {
		p("\tcase domain.%s:\n\t\tw.write%s(x)\n", ev.name, ev.name)
	}
	p("\tdefault:\n\t\treturn false\n\t}\n\treturn true\n}\n\n")
	for _, ev := range evs {
		writeFunc(p, ev)
	}
	p("// readEvent decodes a known event (ok false: a type this build does not know).\n")
	p("func readEvent(typ string, raw []byte) (e domain.Event, ok bool, err error) {\n\tr := newReader(raw)\n\tdefer r.release()\n\tswitch typ {\n")
	for _, ev := range evs {
		p("\tcase %q:\n\t\te = r.read%s()\n", ev.name, ev.name)
	}
	p("\tdefault:\n\t\treturn nil, false, nil\n\t}\n\treturn e, true, r.err\n}\n\n")
	for _, ev := range evs {
		readFunc(p, ev)
	}
	p("// eventFields are the domain's event structs as encoding/json sees them: json names in field\n// order and their options.\n")
	p("var eventFields = map[string][]jsonField{\n")
	for _, ev := range evs {
		var fs []string
		for _, f := range ev.fields {
			fs = append(fs, fmt.Sprintf("{%q, %s}", f.name, f.kind.json))
		}
		p("\t%q: {%s},\n", ev.name, strings.Join(fs, ", "))
	}
	p("}\n")
	return format.Source(b.Bytes())
}

func writeFunc(p func(string, ...any), ev event) {
	var conds []string
	always := 0
	for _, f := range ev.fields {
		if f.kind.omit == "" {
			always++
		} else {
			conds = append(conds, subst(f.kind.omit, f))
		}
	}
	p("func (w *writer) write%s(x domain.%s) {\n", ev.name, ev.name)
	if len(conds) == 0 {
		p("\tw.mapLen(%d)\n", always)
	} else {
		p("\tw.mapLen(%d + count(%s))\n", always, strings.Join(conds, ", "))
	}
	for _, f := range ev.fields {
		stmt := subst(f.kind.write, f)
		if f.kind.omit == "" {
			p("\t%s\n", strings.ReplaceAll(stmt, "\n", "\n\t"))
			continue
		}
		p("\tif %s {\n\t\t%s\n\t}\n", subst(f.kind.omit, f), strings.ReplaceAll(stmt, "\n", "\n\t\t"))
	}
	p("}\n\n")
}

func readFunc(p func(string, ...any), ev event) {
	p("func (r *reader) read%s() (x domain.%s) {\n\tr.each(func(k []byte) {\n\t\tswitch string(k) {\n", ev.name, ev.name)
	for _, f := range ev.fields {
		read := f.kind.read
		if f.conv != "" {
			read = f.conv + "(" + read + ")"
		}
		p("\t\tcase %q:\n\t\t\tx.%s = %s\n", f.name, f.goName, read)
	}
	p("\t\tdefault:\n\t\t\tr.skip()\n\t\t}\n\t})\n\treturn x\n}\n\n")
}

// subst puts the field into a kind's template: x.F its Go name, N its json name, S(x.F) the
// field as a string (converted when its type is a named string type).
func subst(tmpl string, f field) string {
	s := "x." + f.goName
	if f.conv != "" {
		s = "string(x." + f.goName + ")"
	}
	return strings.NewReplacer("S(x.F)", s, "x.F", "x."+f.goName, "N", fmt.Sprintf("%q", f.name)).Replace(tmpl)
}
