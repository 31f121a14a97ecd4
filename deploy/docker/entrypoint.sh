#!/bin/sh
# deploy/docker/entrypoint.sh — the image's entrypoint: the first argument picks what runs.
#
#   receiver | verify | normalize | dedupe | aggregate | rules | deliver | console
#                         that stage's binary (mailpipe-<stage>), the rest as its arguments
#   mailpipe ARGS...      the operator CLI, e.g. `mailpipe create-topics`, `mailpipe migrate`
#   probe PORT PATH       exits 0 when http://127.0.0.1:PORT/PATH answers 200 (container
#                         health checks; the image has no curl)
#   help                  this text
#   anything else         passed to the CLI: `migrate` is `mailpipe migrate`
#
# exec: the binary becomes PID 1 and receives SIGTERM itself (graceful shutdown).
set -eu

usage() {
    sed -n '2,/^set -eu/p' "$0" | sed -e '/^set -eu/d' -e 's/^# \{0,1\}//'
}

# One HTTP/1.0 GET over bash's /dev/tcp; status line "HTTP/1.1 200 OK".
probe() {
    exec bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$2" >&3
        IFS=" " read -r _ status _ <&3 || exit 1
        [ "$status" = 200 ]' probe "$1" "$2"
}

command=${1:-help}
case $command in
    receiver | verify | normalize | dedupe | aggregate | rules | deliver | console)
        shift
        exec "/usr/local/bin/mailpipe-$command" "$@"
        ;;
    mailpipe)
        shift
        exec /usr/local/bin/mailpipe "$@"
        ;;
    probe)
        [ $# -eq 3 ] || { echo "usage: probe PORT PATH" >&2; exit 2; }
        probe "$2" "$3"
        ;;
    help | -h | --help)
        usage
        ;;
    *)
        exec /usr/local/bin/mailpipe "$@"
        ;;
esac
