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
# A consumer reads its topic and commits offsets in its group.
reads() { acl --allow-principal "$1" --operation Read --operation Describe --topic "$(topic "$2")"; }
group() { acl --allow-principal "$1" --operation Read --operation Describe --group "${PREFIX}mailpipe-$2"; }
consumer() {
    reads "$1" "$2"
    group "$1" "$3"
}
# Exactly once ([kafka] exactly_once, the default): the stages that read a topic and write
# topics run Kafka transactions as "<group>.<instance_id>" (one per replica: the StatefulSet
# pod name in deploy/k8s), and commit their offsets inside them.
transactional() {
    acl --allow-principal "$1" --operation Write --operation Describe \
        --transactional-id "${PREFIX}mailpipe-$2." --resource-pattern-type prefixed
}

# Receiver: writes the raw signed requests.
producer User:mailpipe-receiver mail.raw

# Verify: reads mail.raw (the only consumer of credentials), writes the verified requests
# (credentials stripped), rejections (stripped too) and dead letters.
consumer User:mailpipe-verify mail.raw verify
transactional User:mailpipe-verify verify
producer User:mailpipe-verify mail.verified
producer User:mailpipe-verify mail.rejected
producer User:mailpipe-verify mail.dlq

# Normalize: verified requests -> canonical events.
consumer User:mailpipe-normalize mail.verified normalize
transactional User:mailpipe-normalize normalize
producer User:mailpipe-normalize mail.events
producer User:mailpipe-normalize mail.dlq

# Dedupe: events -> unique events. It registers schemas under mail.events.unique-value
# in the schema registry too (registry permissions are the registry's own).
consumer User:mailpipe-dedupe mail.events dedupe
transactional User:mailpipe-dedupe dedupe
producer User:mailpipe-dedupe mail.events.unique
producer User:mailpipe-dedupe mail.dlq

# Aggregate: unique events, and the records of the rules and deliver stages, rejections
# and dead letters -> ClickHouse (no transactions: its rows are idempotent). Dead letters
# of mail.raw records name their coordinates; it reads none of mail.raw itself.
consumer User:mailpipe-aggregate mail.events.unique aggregate
for t in mail.actions mail.suppressions mail.deliveries mail.rejected mail.dlq; do
    reads User:mailpipe-aggregate "$t"
done
producer User:mailpipe-aggregate mail.dlq

# Rules: unique events -> actions and the suppression list.
consumer User:mailpipe-rules mail.events.unique rules
transactional User:mailpipe-rules rules
producer User:mailpipe-rules mail.actions
producer User:mailpipe-rules mail.suppressions
producer User:mailpipe-rules mail.dlq

# Deliver: webhook actions -> signed HTTP requests; it records each attempt on
# mail.deliveries and each outcome on mail.actions (no transactions: Redis holds its
# schedule).
consumer User:mailpipe-deliver mail.actions deliver
producer User:mailpipe-deliver mail.deliveries
producer User:mailpipe-deliver mail.actions
producer User:mailpipe-deliver mail.dlq

# Console: consumer lag of every mailpipe group (describe groups, list offsets); it reads
# no records.
for t in mail.raw mail.verified mail.events mail.events.unique mail.actions mail.suppressions mail.deliveries mail.rejected mail.dlq; do
    acl --allow-principal User:mailpipe-console --operation Describe --topic "$(topic "$t")"
done
acl --allow-principal User:mailpipe-console --operation Describe --group "${PREFIX}mailpipe-" --resource-pattern-type prefixed

# KEDA's Kafka scaler (deploy/k8s ScaledObjects) reads the same lag: describe only.
for t in mail.raw mail.verified mail.events mail.events.unique mail.actions; do
    acl --allow-principal User:keda --operation Describe --topic "$(topic "$t")"
done
acl --allow-principal User:keda --operation Describe --group "${PREFIX}mailpipe-" --resource-pattern-type prefixed

# Operators' tools (mailpipe read/inspect/summary) may read everything, and
# `mailpipe create-topics` creates the topics: give that to an operator principal only,
# never to other teams.
for t in mail.raw mail.verified mail.rejected mail.events mail.events.unique mail.dlq mail.actions mail.suppressions mail.deliveries; do
    acl --allow-principal User:mailpipe-operator --operation Read --operation Describe --topic "$(topic "$t")"
done
acl --allow-principal User:mailpipe-operator --operation Create --operation DescribeConfigs \
    --topic "${PREFIX}mail." --resource-pattern-type prefixed
acl --allow-principal User:mailpipe-operator --operation Read --group '*' --resource-pattern-type literal

# Other teams: the canonical events and the suppression list, with groups of their own
# (prefixed by their principal name here; adapt to your naming). Never mail.raw (request
# headers with credentials), mail.dlq or mail.rejected.
for reader in $READERS; do
    for t in mail.events mail.events.unique mail.suppressions; do
        acl --allow-principal "$reader" --operation Read --operation Describe --topic "$(topic "$t")"
    done
    acl --allow-principal "$reader" --operation Read --group "${reader#User:}-" --resource-pattern-type prefixed
done
