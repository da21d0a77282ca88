// Package check holds jepsen-lite's checkers: given a history of
// operations (invokes and their completions, as Jepsen records them), each
// decides whether the history is consistent with a model and, if not,
// names the anomalies it found, with the operations that witness them.
//
// The package imports nothing from Epochal (only the standard library
// and porcupine): it checks any history of the right shape, whoever
// recorded it. The runner, in package jepsenlite (the parent directory),
// records histories against real servers while injecting faults and
// hands them to these checkers.
//
// # Histories
//
// A history is a []Op in Index order. An operation is an Invoke and its
// completion (OK, Fail or Info) by the same Process; Op.Value holds the
// operation's argument in the invoke and its result in the completion, as
// JSON shaped per workload: []Mop (list-append transactions),
// RegisterValue, BankValue, CounterValue, LockValue, WatchValue. PairOps
// matches invokes with their completions.
//
// WriteJSONL and ReadJSONL (ReadJSONLFile) write and read a history as
// JSON lines, one Op a line, as the runner stores it (history.jsonl);
// WriteEDN writes it as EDN, one map a line, as Jepsen and Elle read it.
//
// # Histories written elsewhere
//
// File checks a history file that Jepsen or Elle wrote (EDN: operation
// maps such as {:type :ok, :f :txn, :value [[:append :x 1] [:r :y [1 2]]],
// :process 3, :time 1234, :index 7}, one after another or in a vector,
// #jepsen.history.Op records included), or that the runner wrote (JSON
// lines), as a list-append, register, bank or counter history (the
// operations as Jepsen's tests of those names write them; see
// ReadHistory). ReadHistory reads one into a History and History.Check
// checks it. A history that cannot be read is an error naming the line
// and column and what was expected there.
//
// # Checkers
//
// Every checker implements Checker: Check(h) returns a Result, whose
// Verdict is PASS, FAIL or UNKNOWN, with its Anomalies by Name.
//
//   - ListAppendChecker (NewListAppendChecker): Elle's list-append
//     analysis: inferred version orders (a read precedes every committed
//     append of an element it does not show, whether or not another read
//     shows it), dependency cycles classified as Adya's G0, G1c,
//     G-single, G-nonadjacent, G2-item, and the non-cycle anomalies G1a,
//     G1b, lost-update, duplicate-elements, garbage, incompatible-order,
//     internal, future-read, dirty-update.
//   - BankChecker (NewBankChecker): every read of the balances sums to
//     the total, shows every account, none negative.
//   - CounterChecker (NewCounterChecker): each read lies between the sum
//     of the adds certainly done before it and of those possibly done.
//   - LinearChecker (NewLinearChecker): registers (read, write, cas),
//     linearizable per key (porcupine); WriteLinearizableHTML draws the
//     search.
//   - MutexChecker and FencingChecker: a lock workload's holdings are
//     linearizable as a mutex, and its fencing tokens order its writes.
//   - WatchChecker: a watcher sees every change of a key, in order, or
//     is told of a gap.
//
// AnomalyMeaning says in a sentence what each anomaly name means, and
// OutcomeMeanings what ok, fail and info do (the report shows both).
//
// The linearizability searches take a timeout (TimeoutSetter); a key not
// decided in time makes the verdict UNKNOWN, not PASS.
//
// # Examples
//
//	res, err := check.File("history.edn", "list-append", check.Options{})
//	if err != nil {
//		return err // e.g. history.edn:12:40: want the value appended (an integer), got keyword :one
//	}
//	fmt.Println(res.Verdict(), len(res.Anomalies))
//
// or, with a history in hand:
//
//	h, err := check.ReadJSONLFile("history.jsonl")
//	if err != nil {
//		return err
//	}
//	res := check.NewListAppendChecker().Check(h)
//	fmt.Println(res.Verdict()) // PASS, FAIL or UNKNOWN
//	for _, a := range res.Anomalies {
//		fmt.Println(a.Name, a.Explain) // a.Ops: the witness
//	}
package check
