#!/usr/bin/env bash
# deploy/kafka-acls/acls.sh — example Kafka ACLs for a mailpipe deployment: each process
# gets exactly the topics and groups it uses, and other teams read the normalized topics
# only. mail.raw (every request header, signatures and Basic credentials included, kept
# for re-verification) and mail.dlq (copies of failed records) are readable by mailpipe's
# own principals alone. See README.md beside this file.
#
# Usage: BOOTSTRAP=broker:9093 COMMAND_CONFIG=admin.properties deploy/kafka-acls/acls.sh
#        (DRY_RUN=1 prints the commands instead of running them)
#
# Needs Kafka's `kafka-acls.sh` (from an Apache Kafka distribution) on PATH, a broker with an
# authorizer, and an admin principal in COMMAND_CONFIG. Principals are examples: one
# User:<name> per mailpipe process kind, as your SASL or mTLS set-up names them.
set -euo pipefail

BOOTSTRAP=${BOOTSTRAP:?set BOOTSTRAP, e.g. broker:9093}
COMMAND_CONFIG=${COMMAND_CONFIG:-}
# The [kafka] topic_prefix of the deployment ("" by default); group ids carry it too.
PREFIX=${TOPIC_PREFIX:-}
# Principals of other teams that consume the normalized events (space-separated).
READERS=${READERS:-User:analytics}

acl() {
    local cmd=(kafka-acls.sh --bootstrap-server "$BOOTSTRAP")
    [[ -n $COMMAND_CONFIG ]] && cmd+=(--command-config "$COMMAND_CONFIG")
    cmd+=(--add "$@")
    if [[ -n ${DRY_RUN:-} ]]; then
        printf '%q ' "${cmd[@]}"
        printf '\n'
    else
        "${cmd[@]}"
    fi
}

topic() { printf '%s%s' "$PREFIX" "$1"; }

# Producers write idempotently (enable.idempotence=true): brokers before 3.0 also need
# IdempotentWrite on the cluster.
producer() { acl --allow-principal "$1" --operation Write --operation Describe --topic "$(topic "$2")"; }
consumer() {
    acl --allow-principal "$1" --operation Read --operation Describe --topic "$(topic "$2")"
    acl --allow-principal "$1" --operation Read --group "${PREFIX}mailpipe-$3"
}

# Receiver: writes the raw signed requests.
producer User:mailpipe-receiver mail.raw

# Verify: reads mail.raw (the only consumer of credentials), writes the verified requests
# (credentials stripped), rejections (stripped too) and dead letters.
consumer User:mailpipe-verify mail.raw verify
producer User:mailpipe-verify mail.verified
producer User:mailpipe-verify mail.rejected
producer User:mailpipe-verify mail.dlq

# Normalize: verified requests -> canonical events.
consumer User:mailpipe-normalize mail.verified normalize
producer User:mailpipe-normalize mail.events
producer User:mailpipe-normalize mail.dlq

# Dedupe: events -> unique events. It registers schemas under mail.events.unique-value
# in the schema registry too (registry permissions are the registry's own).
consumer User:mailpipe-dedupe mail.events dedupe
producer User:mailpipe-dedupe mail.events.unique
producer User:mailpipe-dedupe mail.dlq

# Aggregate: unique events -> ClickHouse.
consumer User:mailpipe-aggregate mail.events.unique aggregate
producer User:mailpipe-aggregate mail.dlq

# Rules: unique events -> actions and the suppression list.
consumer User:mailpipe-rules mail.events.unique rules
producer User:mailpipe-rules mail.actions
producer User:mailpipe-rules mail.suppressions
producer User:mailpipe-rules mail.dlq

# Operators' tools (mailpipe read/inspect/summary) may read everything: give that to an
# operator principal only, never to other teams.
for t in mail.raw mail.verified mail.rejected mail.events mail.events.unique mail.dlq mail.actions mail.suppressions; do
    acl --allow-principal User:mailpipe-operator --operation Read --operation Describe --topic "$(topic "$t")"
done
acl --allow-principal User:mailpipe-operator --operation Read --group '*' --resource-pattern-type literal

# Other teams: the canonical events and the suppression list, with groups of their own
# (prefixed by their principal name here; adapt to your naming).
for reader in $READERS; do
    for t in mail.events mail.events.unique mail.suppressions; do
        acl --allow-principal "$reader" --operation Read --operation Describe --topic "$(topic "$t")"
    done
    acl --allow-principal "$reader" --operation Read --group "${reader#User:}-" --resource-pattern-type prefixed
done
