// Package jepsenlite runs Jepsen-style tests of Epochal: a workload runs
// from several client processes against real servers (redis-server,
// ZooKeeper, or the embedded mem backend) while a nemesis injects faults,
// every operation is recorded, and the merged history is checked. It is
// what `epochal jepsen` runs.
//
// It holds the runner (Run, Recheck), the workloads (Workloads: bank,
// list-append, register, counter, atom-register, lock, mixed, watch),
// the client processes (`epochal jepsen worker`, WorkerArgsMain), and the
// nemesis: the servers it starts and their faults (FaultKill, FaultPause,
// FaultPartition, ... through a TCP Proxy per node), and the faults of the
// client processes themselves (NemesisClientKill, NemesisClientPause,
// NemesisSkew). With Config.RedisTopology "sentinel" the Redis servers
// are a master, a replica and three sentinels, and FaultFailover forces a
// failover (FaultFailoverPause: by stopping the master). The checkers
// are in the subpackage check, which imports nothing from Epochal: the
// histories recorded here are check.Op, and each workload names the
// checkers of its history.
//
// # Entry points
//
//   - Run runs one test as Config says and returns its Summary: the
//     verdict (check.VerdictPass, VerdictFail or VerdictUnknown; or
//     VerdictIncomplete for a run cut short: its ctx was cancelled, by
//     ^C say, and it was not checked: before its history was whole, or
//     while it was being checked, Summary.CheckCutShort), each checker's check.Result, the
//     faults injected and the operations done. It writes a run directory: config.json, the workers'
//     histories, history.jsonl and history.edn (the merged history),
//     results.json and report.html (an HTML report with latency and
//     throughput charts, the faults shaded and the failing anomalies
//     marked; what ok, fail, info and each anomaly name mean
//     (check.AnomalyMeaning); each anomaly's witness, two list reads
//     that disagree compared where they first differ).
//   - Recheck checks a finished run directory's history again (say, with
//     a longer linearizability timeout after an UNKNOWN); RecheckContext
//     stops when its ctx ends, writing nothing. check.CheckContext and
//     History.CheckContext do the same for a checker of one's own.
//   - CheckConfig checks a Config as Run would, without running it.
//   - NewProxy starts a TCP proxy whose traffic can be passed, dropped,
//     delayed or reset: the partitions of a run, and of tests elsewhere.
//
// # Example
//
//	sum, err := jepsenlite.Run(ctx, jepsenlite.Config{
//		Backend:  "redis",
//		Workload: "list-append",
//		Nemesis:  []string{jepsenlite.FaultKill, jepsenlite.FaultPartition},
//		Time:     time.Minute,
//	})
//	if err != nil {
//		return err
//	}
//	fmt.Println(sum.Verdict, sum.Dir) // PASS, FAIL or UNKNOWN; the run directory
//
// The client processes are this executable run again with "jepsen
// worker" and the worker's flags: a program other than epochal sets
// Config.WorkerCmd to a command that ends in WorkerArgsMain (the mem
// backend runs its clients in process and needs none).
package jepsenlite
