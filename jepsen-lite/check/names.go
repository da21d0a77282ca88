package check

import "strings"

// anomalyMeanings is a sentence per anomaly name the checkers emit (the
// cycle names without their -process or -realtime suffix).
var anomalyMeanings = map[string]string{
	// Dependency cycles (Adya's phenomena, as Elle infers them).
	"G0":            "Write cycle: transactions overwrote (appended after) one another in a cycle, so no order of the writes explains the history (dirty write).",
	"G1c":           "Circular information flow: a cycle of write and read dependencies, each transaction seeing another's effects, none of them first.",
	"G-single":      "Read skew: a cycle with exactly one anti-dependency, i.e. a transaction saw some of another's effects but missed others it should have seen (a snapshot that is not one).",
	"G-nonadjacent": "A cycle with several anti-dependencies, none two in a row: a snapshot violation (read skew across more transactions), not allowed under snapshot isolation.",
	"G2-item":       "Write skew: a cycle with two anti-dependencies in a row, i.e. two transactions each read what the other then changed; snapshot isolation allows it, serializability does not.",
	// Non-cycle anomalies of list-append.
	"G1a":                "Aborted read: a transaction read a value appended by a transaction that failed (aborted).",
	"G1b":                "Intermediate read: a transaction read a state in the middle of another transaction, which appended more to the key afterwards.",
	"lost-update":        "Lost update: several transactions read the same state of a key and each appended to it; all committed, so all but one updated a state that no longer held.",
	"incompatible-order": "Two reads of the same key disagree: neither list is a prefix of the other, so no single order of appends explains both.",
	"duplicate-elements": "A read shows the same appended value more than once (each value is appended once).",
	"garbage":            "A read shows a value that no transaction appended.",
	"internal":           "A transaction's read contradicts its own earlier reads and appends of the same key.",
	"future-read":        "A transaction read a value it appends only later itself: the read saw the future.",
	"dirty-update":       "A committed transaction appended after a value of a failed transaction: it built on a state that was never committed.",
	"lost-append":        "The final read, made after every client stopped, lacks appends that were acknowledged: committed writes were lost.",
	"unread-key":         "A key (or counter) with acknowledged writes that no final read found: the key, and its writes, were lost.",
	// Bank.
	"wrong-total":      "A read of every balance does not sum to the total: money was created or destroyed (a read of a torn or lost transfer).",
	"wrong-accounts":   "A read of the balances lacks an account, or shows one that does not exist.",
	"negative-balance": "A read shows a negative balance, which no transfer allows.",
	// Counter.
	"counter-out-of-range": "A counter read lies outside what the adds allow: below the sum of those certainly done before it, or above that of those possibly done.",
	// Registers and locks (porcupine).
	"nonlinearizable":         "No order of the operations, each taking effect at one instant between its invocation and its completion, explains what they returned (e.g. a stale read).",
	"linearizability-unknown": "The linearizability search ran out of time (--check-timeout) on this key: neither found valid nor invalid; the verdict is UNKNOWN.",
	"double-holder":           "Two clients held the same lock at once, both certainly holding it at the time.",
	"token-order":             "Fencing tokens do not increase in real time: a later acquisition got a token not above an earlier one's.",
	"stale-write-accepted":    "A fenced write with an older token was accepted after a write with a newer one: the fence let a stale holder through.",
	"fence-regressed":         "The fence's highest token seen went down: it forgot a newer holder.",
	// Watches.
	"watch-hole":         "A watcher skipped committed versions without a gap notice.",
	"watch-duplicate":    "A watcher delivered the same version twice.",
	"watch-out-of-order": "A watcher delivered a version after a later one.",
	"watch-inconsistent": "A delivery or gap notice does not follow from the watcher's previous one (its old value is not the last delivered).",
	"watch-garbage":      "A watcher delivered a value that was never committed.",
	"watch-undelivered":  "A watcher settled at the end without delivering (or announcing) versions committed before it.",
	"watch-unchecked":    "Nothing to check a watcher against (it recorded or delivered nothing, or never settled): the verdict is UNKNOWN.",
	"announced-gap":      "A watcher was told it missed versions (a gap notice): allowed, the watch contract says so.",
	// Any checker.
	"malformed": "An operation the checker could not read (a value of the wrong shape): the history is not what the workload records.",
}

// AnomalyMeaning is a sentence saying what the anomaly name means, as the
// checkers of this package emit it: G0, G1a, G1b, G1c, G-single,
// G-nonadjacent, G2-item (with a -process or -realtime suffix: the cycle
// needs a process-order or real-time edge), lost-update,
// incompatible-order, duplicate-elements, future-read, dirty-update,
// wrong-total, nonlinearizable, ... "" for a name it does not know.
func AnomalyMeaning(name string) string {
	if m, ok := anomalyMeanings[name]; ok {
		return m
	}
	for suffix, why := range map[string]string{
		"-process":  " It needs a process-order edge: a client's transactions happen in its order (strong session isolation).",
		"-realtime": " It needs a real-time edge: a transaction that completed before another was invoked precedes it (strict/strong isolation).",
	} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if m, ok := anomalyMeanings[base]; ok {
				return m + why
			}
		}
	}
	return ""
}

// OutcomeMeanings says what an operation's completion type means, for
// ok, fail and info.
var OutcomeMeanings = map[Type]string{
	OK:   "the operation completed and took effect (its result is what it returned)",
	Fail: "the operation completed and certainly did not take effect (e.g. a transaction aborted)",
	Info: "the outcome is unknown (a timeout, a lost connection, a killed client): it may or may not have taken effect, and the checkers allow both",
}
