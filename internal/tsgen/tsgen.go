// Package tsgen writes TypeScript declarations for the wire types of a Go
// package, so that the dashboard (site/src) is compiled against the shapes
// the server really sends instead of copies kept by hand.
//
// It reads the package with go/types (the dependencies from the compiler's
// export data, as `go list -export` finds it) and follows encoding/json's
// rules: json tags name fields, omitempty and omitzero make them optional,
// nil pointers, slices and maps encode as null, types that marshal
// themselves as text (time.Time, uuid.UUID, tether.Duration) are strings,
// and an embedded struct's fields are promoted.
//
// What it declares, in source order:
//   - every exported struct type with at least one json-tagged field, as an
//     interface (a struct without tags is not on the wire);
//   - every exported string type, as the union of its constants' values;
//   - every exported type that marshals itself as text, as string;
//   - every exported string, number or boolean constant, as a const.
//
// Go doc comments travel along as JSDoc. A field of a type it cannot
// describe (a foreign struct such as tailcfg.DERPMap) is declared unknown,
// and one it cannot place at all fails the generation, so that drift is
// loud rather than silent.
package tsgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/constant"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Generate returns the TypeScript declarations of the Go package in dir.
// It runs `go list` there, so dir must be inside a module.
func Generate(ctx context.Context, dir string) ([]byte, error) {
	pkg, err := load(ctx, dir)
	if err != nil {
		return nil, err
	}
	g := &generator{pkg: pkg.types, emitted: map[*types.TypeName]bool{}}
	g.collect(pkg.files)
	if err := g.write(pkg.files); err != nil {
		return nil, err
	}
	return g.out.Bytes(), nil
}

// loaded is a parsed and type-checked package.
type loaded struct {
	types *types.Package
	files []*ast.File
}

// listed is what `go list -json` says of one package.
type listed struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Export     string
	DepOnly    bool
	Error      *struct{ Err string }
}

func load(ctx context.Context, dir string) (*loaded, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-e", "-export", "-deps", "-json=ImportPath,Dir,GoFiles,Export,DepOnly,Error", ".")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list in %s: %v: %s", dir, err, strings.TrimSpace(stderr.String()))
	}
	exports := map[string]string{}
	var target *listed
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list output: %w", err)
		}
		if p.Error != nil {
			return nil, fmt.Errorf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		exports[p.ImportPath] = p.Export
		if !p.DepOnly {
			target = &p
		}
	}
	if target == nil {
		return nil, fmt.Errorf("go list in %s: no package", dir)
	}

	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range target.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(target.Dir, name), nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		file, ok := exports[path]
		if !ok || file == "" {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(file)
	})
	conf := types.Config{Importer: imp}
	tp, err := conf.Check(target.ImportPath, fset, files, nil)
	if err != nil {
		return nil, fmt.Errorf("type-check %s: %w", target.ImportPath, err)
	}
	return &loaded{types: tp, files: files}, nil
}

// generator declares the types of one package.
type generator struct {
	pkg *types.Package
	out bytes.Buffer
	// emitted holds the types that get a declaration, so that fields can
	// refer to them by name.
	emitted map[*types.TypeName]bool
}

// collect decides which types are declared, before any is written, so
// that a field may refer to a type declared further down.
func (g *generator) collect(files []*ast.File) {
	for _, f := range files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, s := range gd.Specs {
				ts := s.(*ast.TypeSpec)
				if !ts.Name.IsExported() {
					continue
				}
				tn := g.pkg.Scope().Lookup(ts.Name.Name).(*types.TypeName)
				if g.declares(tn) {
					g.emitted[tn] = true
				}
			}
		}
	}
}

// declares reports whether tn gets a declaration.
func (g *generator) declares(tn *types.TypeName) bool {
	t := tn.Type()
	if marshalsText(t) {
		return true
	}
	switch u := t.Underlying().(type) {
	case *types.Struct:
		for i := range u.NumFields() {
			if _, ok := reflect.StructTag(u.Tag(i)).Lookup("json"); ok {
				return true
			}
		}
	case *types.Basic:
		return u.Info()&types.IsString != 0
	}
	return false
}

func (g *generator) write(files []*ast.File) error {
	fmt.Fprintf(&g.out, "// Code generated by internal/tsgen from the Go package %s; DO NOT EDIT.\n", g.pkg.Path())
	fmt.Fprintf(&g.out, "// The JSON shapes of its wire types and its constants; change them in Go.\n")
	for _, f := range files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok {
				continue
			}
			var err error
			switch gd.Tok {
			case token.TYPE:
				err = g.writeTypes(gd)
			case token.CONST:
				err = g.writeConsts(gd)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func (g *generator) writeTypes(gd *ast.GenDecl) error {
	for _, s := range gd.Specs {
		ts := s.(*ast.TypeSpec)
		if !ts.Name.IsExported() {
			continue
		}
		tn := g.pkg.Scope().Lookup(ts.Name.Name).(*types.TypeName)
		if !g.emitted[tn] {
			continue
		}
		doc := ts.Doc
		if doc == nil && len(gd.Specs) == 1 {
			doc = gd.Doc
		}
		g.out.WriteString("\n")
		writeDoc(&g.out, "", doc)
		name := tn.Name()
		t := tn.Type()
		if marshalsText(t) {
			fmt.Fprintf(&g.out, "export type %s = string;\n", name)
			continue
		}
		switch u := t.Underlying().(type) {
		case *types.Basic:
			fmt.Fprintf(&g.out, "export type %s = %s;\n", name, g.enum(t))
		case *types.Struct:
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return fmt.Errorf("type %s: only struct literals are supported, not %T", name, ts.Type)
			}
			if err := g.writeInterface(name, u, st); err != nil {
				return err
			}
		}
	}
	return nil
}

// enum is the union of the values of t's constants, or string when it has
// none.
func (g *generator) enum(t types.Type) string {
	var values []string
	scope := g.pkg.Scope()
	for _, n := range scope.Names() {
		c, ok := scope.Lookup(n).(*types.Const)
		if ok && c.Exported() && types.Identical(c.Type(), t) {
			values = append(values, jsString(constant.StringVal(c.Val())))
		}
	}
	if len(values) == 0 {
		return "string"
	}
	// By value, so that renaming a constant does not reorder the union.
	slices.Sort(values)
	return strings.Join(values, " | ")
}

func (g *generator) writeInterface(name string, st *types.Struct, decl *ast.StructType) error {
	var extends []string
	var body bytes.Buffer
	for i := range st.NumFields() {
		f := st.Field(i)
		tag, hasTag := reflect.StructTag(st.Tag(i)).Lookup("json")
		jsonName, opts, _ := strings.Cut(tag, ",")
		if !f.Exported() && !f.Embedded() || tag == "-" {
			continue
		}
		if f.Embedded() && (!hasTag || jsonName == "") {
			// encoding/json promotes the fields of an untagged
			// embedded struct.
			named, ok := f.Type().(*types.Named)
			if !ok || !g.emitted[named.Obj()] {
				return fmt.Errorf("type %s: embedded field %s: only embedded structs of this package that are themselves declared are supported", name, f.Name())
			}
			extends = append(extends, named.Obj().Name())
			continue
		}
		if !f.Exported() {
			continue
		}
		if jsonName == "" {
			jsonName = f.Name()
		}
		optional := hasOption(opts, "omitempty") || hasOption(opts, "omitzero")
		var ts string
		if hasOption(opts, "string") {
			ts = "string"
		} else {
			var err error
			ts, err = g.tsType(f.Type(), optional)
			if err != nil {
				return fmt.Errorf("type %s: field %s: %w", name, f.Name(), err)
			}
		}
		writeDoc(&body, "  ", fieldDoc(decl, f.Name()))
		q := ""
		if optional {
			q = "?"
		}
		fmt.Fprintf(&body, "  %s%s: %s;\n", propertyName(jsonName), q, ts)
	}
	fmt.Fprintf(&g.out, "export interface %s", name)
	if len(extends) > 0 {
		fmt.Fprintf(&g.out, " extends %s", strings.Join(extends, ", "))
	}
	if body.Len() == 0 {
		g.out.WriteString(" {}\n")
		return nil
	}
	g.out.WriteString(" {\n")
	g.out.Write(body.Bytes())
	g.out.WriteString("}\n")
	return nil
}

// tsType is the TypeScript type of a value of Go type t as encoding/json
// writes it. omitted says the field is left out when empty, so that a nil
// pointer, slice or map never appears as null.
func (g *generator) tsType(t types.Type, omitted bool) (string, error) {
	t = types.Unalias(t)
	if named, ok := t.(*types.Named); ok {
		if g.emitted[named.Obj()] {
			return named.Obj().Name(), nil
		}
		if marshalsText(t) {
			return "string", nil
		}
		if marshalsJSON(t) {
			return "unknown", nil
		}
		if named.Obj().Pkg() != g.pkg {
			if _, ok := t.Underlying().(*types.Struct); ok {
				// Another package's struct (tailcfg.DERPMap): its
				// shape is not ours to describe.
				return "unknown", nil
			}
		}
	}
	orNull := func(s string) string {
		if omitted || s == "unknown" {
			return s
		}
		return s + " | null"
	}
	switch u := t.Underlying().(type) {
	case *types.Basic:
		switch {
		case u.Info()&types.IsString != 0:
			return "string", nil
		case u.Info()&types.IsBoolean != 0:
			return "boolean", nil
		case u.Info()&types.IsNumeric != 0 && u.Info()&types.IsComplex == 0:
			return "number", nil
		}
	case *types.Pointer:
		elem, err := g.tsType(u.Elem(), false)
		if err != nil {
			return "", err
		}
		return orNull(elem), nil
	case *types.Slice:
		if b, ok := u.Elem().Underlying().(*types.Basic); ok && b.Kind() == types.Byte {
			return orNull("string"), nil // base64
		}
		elem, err := g.tsType(u.Elem(), false)
		if err != nil {
			return "", err
		}
		return orNull(arrayOf(elem)), nil
	case *types.Array:
		elem, err := g.tsType(u.Elem(), false)
		if err != nil {
			return "", err
		}
		return arrayOf(elem), nil
	case *types.Map:
		k, ok := u.Key().Underlying().(*types.Basic)
		if (!ok || k.Info()&(types.IsString|types.IsInteger) == 0) && !marshalsText(u.Key()) {
			return "", fmt.Errorf("map key %s is neither a string, an integer nor a text marshaler", u.Key())
		}
		elem, err := g.tsType(u.Elem(), false)
		if err != nil {
			return "", err
		}
		return orNull("Record<string, " + elem + ">"), nil
	case *types.Interface:
		return "unknown", nil
	}
	return "", fmt.Errorf("cannot describe %s in TypeScript", t)
}

func arrayOf(elem string) string {
	if strings.Contains(elem, " ") {
		return "(" + elem + ")[]"
	}
	return elem + "[]"
}

func (g *generator) writeConsts(gd *ast.GenDecl) error {
	wrote := false
	for _, s := range gd.Specs {
		vs := s.(*ast.ValueSpec)
		for _, id := range vs.Names {
			if !id.IsExported() {
				continue
			}
			c := g.pkg.Scope().Lookup(id.Name).(*types.Const)
			var v string
			switch c.Val().Kind() {
			case constant.String:
				v = jsString(constant.StringVal(c.Val()))
			case constant.Int, constant.Bool:
				v = c.Val().ExactString()
			case constant.Float:
				f, _ := constant.Float64Val(c.Val())
				v = strconv.FormatFloat(f, 'g', -1, 64)
			default:
				continue
			}
			if !wrote {
				g.out.WriteString("\n")
				if len(gd.Specs) > 1 {
					// A group's doc is about all of them, not the
					// first, which is what JSDoc would make of it.
					writeLineComment(&g.out, gd.Doc)
				}
				wrote = true
			}
			doc := vs.Doc
			if doc == nil {
				doc = vs.Comment
			}
			if doc == nil && len(gd.Specs) == 1 {
				doc = gd.Doc
			}
			writeDoc(&g.out, "", doc)
			fmt.Fprintf(&g.out, "export const %s = %s;\n", id.Name, v)
		}
	}
	return nil
}

// marshalsText reports whether t (or *t) encodes itself as a JSON string
// through encoding.TextMarshaler and does not override it with its own
// MarshalJSON.
func marshalsText(t types.Type) bool {
	return hasMethod(t, "MarshalText") && !hasMethod(t, "MarshalJSON") ||
		isNamed(t, "time", "Time")
}

// marshalsJSON reports whether t (or *t) writes its own JSON.
func marshalsJSON(t types.Type) bool { return hasMethod(t, "MarshalJSON") }

func hasMethod(t types.Type, name string) bool {
	for _, typ := range []types.Type{t, types.NewPointer(t)} {
		ms := types.NewMethodSet(typ)
		for i := range ms.Len() {
			if ms.At(i).Obj().Name() == name {
				return true
			}
		}
	}
	return false
}

func isNamed(t types.Type, pkg, name string) bool {
	n, ok := types.Unalias(t).(*types.Named)
	return ok && n.Obj().Pkg() != nil && n.Obj().Pkg().Path() == pkg && n.Obj().Name() == name
}

func hasOption(opts, name string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == name {
			return true
		}
	}
	return false
}

// propertyName quotes a JSON name that is not a plain identifier.
func propertyName(s string) string {
	for i, r := range s {
		if !(r == '_' || r == '$' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || i > 0 && '0' <= r && r <= '9') {
			return strconv.Quote(s)
		}
	}
	if s == "" {
		return `""`
	}
	return s
}

// fieldDoc is the doc comment (or else the trailing comment) of field
// name in st.
func fieldDoc(st *ast.StructType, name string) *ast.CommentGroup {
	for _, f := range st.Fields.List {
		for _, n := range f.Names {
			if n.Name == name {
				if f.Doc != nil {
					return f.Doc
				}
				return f.Comment
			}
		}
	}
	return nil
}

// writeDoc writes a Go comment as JSDoc.
func writeDoc(w *bytes.Buffer, indent string, doc *ast.CommentGroup) {
	text := strings.TrimSpace(doc.Text())
	if text == "" {
		return
	}
	text = strings.ReplaceAll(text, "*/", "*\\/")
	lines := strings.Split(text, "\n")
	if len(lines) == 1 {
		fmt.Fprintf(w, "%s/** %s */\n", indent, lines[0])
		return
	}
	fmt.Fprintf(w, "%s/**\n", indent)
	for _, l := range lines {
		if l == "" {
			fmt.Fprintf(w, "%s *\n", indent)
		} else {
			fmt.Fprintf(w, "%s * %s\n", indent, l)
		}
	}
	fmt.Fprintf(w, "%s */\n", indent)
}

// writeLineComment writes a Go comment as // lines.
func writeLineComment(w *bytes.Buffer, doc *ast.CommentGroup) {
	text := strings.TrimSpace(doc.Text())
	if text == "" {
		return
	}
	for _, l := range strings.Split(text, "\n") {
		if l == "" {
			w.WriteString("//\n")
		} else {
			fmt.Fprintf(w, "// %s\n", l)
		}
	}
}

// jsString is s as a JavaScript string literal: JSON's quoting is valid
// JavaScript.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
