package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// prompter asks the user questions on the terminal, until the command's
// context ends (Ctrl-C): a read from a terminal cannot be cancelled, so
// each question waits for the answer or the context, whichever is first.
type prompter struct {
	ctx context.Context // the command's; a prompter lives for one command
	env *Env
	in  *bufio.Reader
}

func newPrompter(ctx context.Context, env *Env) *prompter {
	return &prompter{ctx: ctx, env: env, in: bufio.NewReader(env.Stdin)}
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
	line, err := p.await(func() (string, error) { return p.in.ReadString('\n') }, nil)
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		if p.ctx.Err() != nil {
			return "", err
		}
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
	fd := int(f.Fd())
	fmt.Fprintf(p.env.Stderr, "%s: ", question)
	state, err := term.GetState(fd)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", strings.ToLower(question), err)
	}
	pw, err := p.await(func() (string, error) {
		b, err := term.ReadPassword(fd)
		return string(b), err
	}, func() { term.Restore(fd, state) }) // echo back on after Ctrl-C
	fmt.Fprintln(p.env.Stderr)
	if err != nil {
		if p.ctx.Err() != nil {
			return "", err
		}
		return "", fmt.Errorf("read %s: %w", strings.ToLower(question), err)
	}
	return pw, nil
}

// await runs read until it returns or the context ends; then it calls
// abandon (if not nil) and returns the context's error, leaving read
// blocked until the process exits.
func (p *prompter) await(read func() (string, error), abandon func()) (string, error) {
	type answer struct {
		s   string
		err error
	}
	done := make(chan answer, 1)
	go func() {
		s, err := read()
		done <- answer{s, err}
	}()
	select {
	case a := <-done:
		return a.s, a.err
	case <-p.ctx.Done():
		if abandon != nil {
			abandon()
		}
		return "", p.ctx.Err()
	}
}
