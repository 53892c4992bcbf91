// Package e2e holds Tether's end-to-end tests: the real tether binary,
// built once per run, as a server, agents and CLIs in processes of their
// own, driven the way users and operators drive them. It has no code
// outside its tests.
package e2e
