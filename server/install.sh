#!/bin/sh
# Installs and starts the Tether agent of a workspace. The Tether server at
# {{.URL}} serves this script at /install.sh; `tether create` prints how to run it:
#
#   curl -fsSL {{.URL}}/install.sh | TETHER_AGENT_TOKEN=TOKEN sh
#
# It downloads the agent binary for this machine from that same server,
# checks its SHA-256, installs it as $TETHER_INSTALL_DIR/tether (default
# ~/.local/bin/tether), and starts `tether agent` in the background with its
# log in ~/.local/state/tether/agent.log, replacing an agent it started
# before. The token travels in the environment only, never on a command line.
#
# Environment:
#   TETHER_AGENT_TOKEN        the workspace's agent token (required)
#   TETHER_INSTALL_DIR        where to install the binary (default ~/.local/bin)
#   TETHER_AGENT_FOREGROUND   1: run the agent in the foreground instead
#                             (as a container's main process, under a supervisor)
#   TETHER_INSTALL_ONLY       1: install the binary, start nothing
set -eu

# Everything happens in main, called on the last line: a download cut short
# runs nothing.
main() {
	server_url='{{.URL}}'

	if [ "${TETHER_INSTALL_ONLY:-}" != 1 ] && [ -z "${TETHER_AGENT_TOKEN:-}" ]; then
		fail "TETHER_AGENT_TOKEN is not set: run the exact command \`tether create\` printed, which sets it"
	fi
	if [ -z "${HOME:-}" ] && [ -z "${TETHER_INSTALL_DIR:-}" ]; then
		fail "HOME is not set: set TETHER_INSTALL_DIR to the directory to install tether in"
	fi

	kernel=$(uname -s)
	machine=$(uname -m)
	case $kernel in
	Linux) os=linux ;;
	Darwin) os=darwin ;;
	*) fail "this system ($kernel) has no Tether agent: it runs on Linux and macOS" ;;
	esac
	case $machine in
	x86_64 | amd64) arch=amd64 ;;
	aarch64 | arm64 | armv8*) arch=arm64 ;;
	*) fail "this machine's architecture ($machine) has no Tether agent: it runs on amd64 (x86_64) and arm64 (aarch64)" ;;
	esac
	name=tether-$os-$arch

	pick_downloader
	pick_hasher

	dir=${TETHER_INSTALL_DIR:-$HOME/.local/bin}
	mkdir -p "$dir" || fail "cannot create $dir: set TETHER_INSTALL_DIR to a directory you may write"
	# Downloaded beside its destination, so that the final rename is atomic
	# (an agent running the old binary keeps it).
	tmp_bin=$dir/.tether.download.$$
	tmp_sum=$dir/.tether.sha256.$$
	trap 'rm -f "$tmp_bin" "$tmp_sum"' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	say "downloading $name from $server_url"
	download "$server_url/bin/$name.sha256" "$tmp_sum"
	download "$server_url/bin/$name" "$tmp_bin"

	want=$(sed -n '1s/^\([0-9a-fA-F]\{64\}\).*/\1/p' "$tmp_sum" | tr 'A-F' 'a-f')
	[ -n "$want" ] || fail "the server's checksum for $name is not a SHA-256: $(head -n 1 "$tmp_sum")"
	got=$(sha256_of "$tmp_bin")
	if [ "$got" != "$want" ]; then
		fail "checksum mismatch for $name: the server says $want, the download is $got. The download was damaged or tampered with on its way; nothing was installed."
	fi

	chmod 755 "$tmp_bin"
	if ! "$tmp_bin" agent --help >/dev/null 2>&1; then
		fail "the downloaded tether does not run on this machine (is $dir on a noexec mount? set TETHER_INSTALL_DIR to another directory)"
	fi
	mv -f "$tmp_bin" "$dir/tether"
	bin=$dir/tether
	say "installed $bin"

	if [ "${TETHER_INSTALL_ONLY:-}" = 1 ]; then
		return 0
	fi

	# The token stays in the environment (TETHER_AGENT_TOKEN, as it came
	# in), so that no command line, as ps shows it, ever holds it.
	export TETHER_AGENT_TOKEN
	TETHER_AGENT_URL=$server_url
	export TETHER_AGENT_URL

	state=${XDG_STATE_HOME:-${HOME:-$dir}/.local/state}/tether
	mkdir -p "$state" || fail "cannot create $state for the agent's log"
	pidfile=$state/agent.pid
	log=$state/agent.log
	stop_previous "$pidfile"

	if [ "${TETHER_AGENT_FOREGROUND:-}" = 1 ]; then
		rm -f "$tmp_sum"
		trap - EXIT INT TERM
		say "starting the agent in the foreground"
		exec "$bin" agent
	fi

	if [ -f "$log" ]; then
		mv -f "$log" "$log.1"
	fi
	# nohup: the agent outlives the terminal this ran in. Its input is not
	# this script's (curl's pipe).
	nohup "$bin" agent </dev/null >"$log" 2>&1 &
	pid=$!
	echo "$pid" >"$pidfile"

	# Wait until the agent has reached the server (it logs "agent running"
	# once the server accepted its token), or died.
	i=0
	while [ "$i" -lt 30 ]; do
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$pidfile"
			say "the agent exited at once; the end of its log ($log):"
			tail -n 15 "$log" >&2
			exit 1
		fi
		if grep -q 'agent running' "$log"; then
			say "the agent is running (pid $pid) and reached $server_url; its log is $log"
			return 0
		fi
		sleep 1
		i=$((i + 1))
	done
	say "the agent is running (pid $pid) but has not reached $server_url yet; it keeps trying: see its log, $log"
}

say() {
	printf 'tether install: %s\n' "$*" >&2
}

fail() {
	say "$*"
	exit 1
}

pick_downloader() {
	if command -v curl >/dev/null 2>&1; then
		downloader=curl
	elif command -v wget >/dev/null 2>&1; then
		downloader=wget
	else
		fail "neither curl nor wget is installed: install one of them and run this again"
	fi
}

# download URL FILE saves URL to FILE, or fails with the server's message.
download() {
	if [ "$downloader" = curl ]; then
		status=$(curl -sSL --retry 3 -o "$2" -w '%{http_code}' "$1") || fail "cannot download $1 (curl failed, as it says above)"
		if [ "$status" != 200 ]; then
			fail "cannot download $1: HTTP $status: $(head -c 500 "$2" 2>/dev/null || true)"
		fi
	else
		wget -q -O "$2" "$1" || fail "cannot download $1 (wget failed: the server refused it, or is out of reach; try it with curl for the server's message)"
	fi
}

pick_hasher() {
	if command -v sha256sum >/dev/null 2>&1; then
		hasher=sha256sum
	elif command -v shasum >/dev/null 2>&1; then
		hasher=shasum
	elif command -v openssl >/dev/null 2>&1; then
		hasher=openssl
	else
		fail "no sha256sum, shasum or openssl to check the download with: install one of them (coreutils has sha256sum)"
	fi
}

sha256_of() {
	case $hasher in
	sha256sum) sha256sum "$1" ;;
	shasum) shasum -a 256 "$1" ;;
	openssl) openssl dgst -sha256 -r "$1" ;;
	esac | sed -n '1s/^\([0-9a-fA-F]\{64\}\).*/\1/p' | tr 'A-F' 'a-f'
}

# stop_previous PIDFILE stops the agent this script started last time, if
# it still runs: a workspace's token serves one agent at a time, so the new
# one takes its place.
stop_previous() {
	[ -f "$1" ] || return 0
	old=$(cat "$1")
	case $old in
	'' | *[!0-9]*) return 0 ;;
	esac
	kill -0 "$old" 2>/dev/null || return 0
	# The pid may be another program's by now: stop it only if it is
	# `tether agent`.
	if [ -r "/proc/$old/cmdline" ]; then
		args=$(tr '\000' ' ' <"/proc/$old/cmdline")
	else
		args=$(ps -p "$old" -o args= 2>/dev/null || true)
	fi
	case $args in
	*tether*' agent'*) ;;
	*) return 0 ;;
	esac
	say "stopping the agent started before (pid $old)"
	kill "$old" 2>/dev/null || return 0
	i=0
	while kill -0 "$old" 2>/dev/null; do
		if [ "$i" -ge 10 ]; then
			kill -9 "$old" 2>/dev/null || true
			break
		fi
		sleep 1
		i=$((i + 1))
	done
}

main "$@"
