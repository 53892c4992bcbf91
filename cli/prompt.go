package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// prompter asks the user questions on the terminal.
type prompter struct {
	env *Env
	in  *bufio.Reader
}

func newPrompter(env *Env) *prompter {
	return &prompter{env: env, in: bufio.NewReader(env.Stdin)}
}

// interactive reports whether stdin is a terminal.
func (p *prompter) interactive() bool {
	f, ok := p.env.Stdin.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// ask prints a question and reads one line. def is the answer to an empty
// line, if not "".
func (p *prompter) ask(question, def string) (string, error) {
	if def != "" {
		fmt.Fprintf(p.env.Stderr, "%s [%s]: ", question, def)
	} else {
		fmt.Fprintf(p.env.Stderr, "%s: ", question)
	}
	line, err := p.in.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", fmt.Errorf("read answer to %q: %w", question, err)
	}
	line = strings.TrimSpace(line)
	if line == "" {
		line = def
	}
	return line, nil
}

// askSecret reads a line without echo when stdin is a terminal.
func (p *prompter) askSecret(question string) (string, error) {
	f, ok := p.env.Stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return p.ask(question, "")
	}
	fmt.Fprintf(p.env.Stderr, "%s: ", question)
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(p.env.Stderr)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", strings.ToLower(question), err)
	}
	return string(b), nil
}
