// Command benchsummary reads `go test -bench` output on stdin and prints the summary lines of
// `task bench`:
//
//	ratio <name> <value>          ours / raw baseline, measured in the same run
//	figure <name> <value> <unit>
//
// A metric reported as "ratio" becomes a ratio line; "suffix:unit" becomes a figure named
// <benchmark>_<suffix>; any other custom unit a figure named after the benchmark.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"unicode"
)

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchsummary:", err)
		os.Exit(1)
	}
}

var lineRE = regexp.MustCompile(`^Benchmark(\S+?)(-\d+)?\s+\d+\s+(.*)$`)

func run(in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		m := lineRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		name := snake(m[1])
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			val, unit := f[i], f[i+1]
			switch {
			case unit == "ns/op" || unit == "B/op" || unit == "allocs/op":
			case unit == "ratio":
				fmt.Fprintf(out, "ratio %s %s\n", name, val)
				n++
			case strings.Contains(unit, ":"):
				suffix, u, _ := strings.Cut(unit, ":")
				fmt.Fprintf(out, "figure %s_%s %s %s\n", name, suffix, val, u)
				n++
			default:
				fmt.Fprintf(out, "figure %s %s %s\n", name, val, unit)
				n++
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("no benchmark figures in the input")
	}
	return nil
}

// snake turns "AppendSync" into "append_sync" and "Load100Of1M" into "load100_of1_m".
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == '/' || r == '-':
			b.WriteByte('_')
		case unicode.IsUpper(r):
			if i > 0 && !unicode.IsUpper(rune(s[i-1])) && s[i-1] != '/' {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
