package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
)

// runCompletion prints a completion script for bash or zsh. The verbs and each verb's flags come
// from the same flag sets the verbs parse with, so the script matches this binary.
func runCompletion(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet(ctx, "completion", stdout, stderr)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || (pos[0] != "bash" && pos[0] != "zsh") {
		return fmt.Errorf("completion: want bash or zsh, as in: source <(shadowbridge completion bash)")
	}
	var names []string
	cases := map[string]string{}
	for _, v := range verbTable() {
		names = append(names, v.name)
		flags, err := verbFlags(ctx, v, getenv)
		if err != nil {
			return err
		}
		cases[v.name] = strings.Join(flags, " ")
	}
	var b strings.Builder
	if pos[0] == "zsh" {
		b.WriteString("#compdef shadowbridge\n# zsh completion for shadowbridge: source it, or save it as _shadowbridge in a directory of $fpath.\n")
		b.WriteString("_shadowbridge() {\n  if (( CURRENT == 2 )); then\n    compadd -- " + strings.Join(names, " ") + "\n    return\n  fi\n  case ${words[2]} in\n")
		for _, n := range names {
			if cases[n] != "" {
				fmt.Fprintf(&b, "    %s) [[ ${words[CURRENT]} == -* ]] && compadd -- %s || _files ;;\n", n, cases[n])
			}
		}
		b.WriteString("    completion) compadd -- bash zsh ;;\n    help) compadd -- " + strings.Join(names, " ") + " ;;\n  esac\n}\n")
		b.WriteString("if [[ ${funcstack[1]} == _shadowbridge ]]; then _shadowbridge \"$@\"; else compdef _shadowbridge shadowbridge; fi\n")
	} else {
		b.WriteString("# bash completion for shadowbridge: source <(shadowbridge completion bash)\n")
		b.WriteString("_shadowbridge() {\n  local cur=${COMP_WORDS[COMP_CWORD]}\n  if [[ $COMP_CWORD -eq 1 ]]; then\n    COMPREPLY=($(compgen -W \"" + strings.Join(names, " ") + "\" -- \"$cur\"))\n    return\n  fi\n  case ${COMP_WORDS[1]} in\n")
		for _, n := range names {
			if cases[n] != "" {
				fmt.Fprintf(&b, "    %s) [[ $cur == -* ]] && COMPREPLY=($(compgen -W \"%s\" -- \"$cur\")) || COMPREPLY=($(compgen -f -- \"$cur\")) ;;\n", n, cases[n])
			}
		}
		b.WriteString("    completion) COMPREPLY=($(compgen -W \"bash zsh\" -- \"$cur\")) ;;\n    help) COMPREPLY=($(compgen -W \"" + strings.Join(names, " ") + "\" -- \"$cur\")) ;;\n  esac\n}\ncomplete -F _shadowbridge shadowbridge\n")
	}
	_, err = io.WriteString(stdout, b.String())
	return err
}

// verbFlags returns a verb's flags ("--name"), read from the flag set the verb builds when asked
// for help.
func verbFlags(ctx context.Context, v verb, getenv func(string) string) ([]string, error) {
	if v.name == "completion" || v.name == "help" {
		return nil, nil
	}
	var sets []*flag.FlagSet
	ctx = context.WithValue(context.WithValue(ctx, helpKey{}, true), collectKey{}, &sets)
	if err := v.run(ctx, []string{"--help"}, getenv, io.Discard, io.Discard); err != nil && err != flag.ErrHelp {
		return nil, fmt.Errorf("completion: flags of %s: %w", v.name, err)
	}
	var out []string
	for _, fs := range sets {
		fs.VisitAll(func(f *flag.Flag) { out = append(out, "--"+f.Name) })
	}
	return out, nil
}
