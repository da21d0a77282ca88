package bench

import "fmt"

// Goal statuses.
const (
	Met    = "met"
	NotMet = "not met"
)

// Goal is one speed target judged on the cells of one run.
type Goal struct {
	Name   string `json:"name"`
	Status string `json:"status"` // Met or NotMet
	// Measured says what was measured against the target.
	Measured string `json:"measured"`
}

// Uncontended and contended regimes, as the goals name them: at least
// 100 accounts is uncontended; at most 10 accounts with at least 16
// workers is contended.
func uncontended(c Cell) bool { return c.Accounts >= 100 }
func contended(c Cell) bool   { return c.Accounts <= 10 && c.Workers >= 16 }

// find returns the cell of impl in c's regime, if it ran without error.
func find(cells []Cell, c Cell, impl string) (Cell, bool) {
	for _, o := range cells {
		if o.Impl == impl && o.Workload == c.Workload && o.Backend == c.Backend && o.Workers == c.Workers && o.Accounts == c.Accounts && o.Error == "" {
			return o, true
		}
	}
	return Cell{}, false
}

func status(ok bool) string {
	if ok {
		return Met
	}
	return NotMet
}

func regime(c Cell) string {
	return fmt.Sprintf("%s %s, %d accounts, %d workers", c.Backend, c.Workload, c.Accounts, c.Workers)
}

// Goals judges the speed targets on cells (those of one
// run): each target is judged in every regime it applies to where both
// sides ran, and is absent where they did not.
//
//   - Redis, uncontended: epochal >= 1.0x watch-multi; with 16 workers or
//     more also >= 0.5x lua; <= 2 round trips per transfer (with any
//     number of workers).
//   - Redis, contended: epochal >= 2x watch-multi; <= 0.5 retries per
//     commit; p99 <= 10x p50.
//   - ZooKeeper: epochal >= 1.0x zk-multi uncontended, >= 2x contended.
//   - mem: epochal >= 1.0x go-stm in every regime.
//   - Every backend and regime: epochal-commute at least as fast as
//     epochal, with no more retries (the debit is an Alter; the credit's
//     commute adds none; within 10% + 0.005 per commit); swap's epochal-commute (a commute alone, on the
//     one-phase path) 0 retries (Stats.Retries: a commute value
//     computed again on a stale base is reported beside it, not counted
//     as a retry).
func Goals(cells []Cell) []Goal {
	var goals []Goal
	ratio := func(c Cell, peer string, want float64) {
		p, ok := find(cells, c, peer)
		if !ok || p.PerSec == 0 {
			return
		}
		r := c.PerSec / p.PerSec
		goals = append(goals, Goal{
			Name:     fmt.Sprintf("%s: %s >= %.1fx %s", regime(c), c.Impl, want, peer),
			Status:   status(r >= want),
			Measured: fmt.Sprintf("%.2fx (%.0f against %.0f ops/s)", r, c.PerSec, p.PerSec),
		})
	}
	for _, c := range cells {
		if c.Error != "" || c.Workload != Bank {
			continue
		}
		switch c.Impl {
		case "epochal":
			switch c.Backend {
			case Redis:
				if uncontended(c) {
					ratio(c, "watch-multi", 1.0)
					if c.Workers >= 16 {
						ratio(c, "lua", 0.5)
					}
					if c.CountPerOp != nil {
						goals = append(goals, Goal{
							Name:     fmt.Sprintf("%s: <= 2 round trips per transfer", regime(c)),
							Status:   status(*c.CountPerOp <= 2.0),
							Measured: fmt.Sprintf("%.2f", *c.CountPerOp),
						})
					}
				}
				if contended(c) {
					ratio(c, "watch-multi", 2.0)
					goals = append(goals, Goal{
						Name:     fmt.Sprintf("%s: <= 0.5 retries per commit", regime(c)),
						Status:   status(c.RetriesPerOp <= 0.5),
						Measured: fmt.Sprintf("%.2f", c.RetriesPerOp),
					}, Goal{
						Name:     fmt.Sprintf("%s: p99 <= 10x p50", regime(c)),
						Status:   status(c.P99Micros <= 10*c.P50Micros),
						Measured: fmt.Sprintf("p50 %.0f µs, p99 %.0f µs (%.1fx)", c.P50Micros, c.P99Micros, c.P99Micros/max(c.P50Micros, 1e-9)),
					})
				}
			case ZK:
				if uncontended(c) {
					ratio(c, "zk-multi", 1.0)
				}
				if contended(c) {
					ratio(c, "zk-multi", 2.0)
				}
			case Mem:
				ratio(c, "go-stm", 1.0)
			}
		case "epochal-commute":
			a, ok := find(cells, c, "epochal")
			if !ok || a.PerSec == 0 {
				continue
			}
			r := c.PerSec / a.PerSec
			goals = append(goals, Goal{
				Name:     fmt.Sprintf("%s: epochal-commute at least as fast as epochal", regime(c)),
				Status:   status(r >= 1.0),
				Measured: fmt.Sprintf("%.2fx (%.0f against %.0f ops/s)", r, c.PerSec, a.PerSec),
			}, Goal{
				// The debit is an Alter, which may conflict: the credit's
				// commute must add no retries of its own (within 10% and
				// 0.005 per commit: two cells' retries are never equal).
				Name:     fmt.Sprintf("%s: epochal-commute retries no more than epochal", regime(c)),
				Status:   status(c.RetriesPerOp <= a.RetriesPerOp*1.1+0.005),
				Measured: fmt.Sprintf("%.3f against %.3f retries per commit", c.RetriesPerOp, a.RetriesPerOp),
			})
		}
	}
	// A commute alone (the swap workload's epochal-commute: Commute(+1)
	// in a Dosync) never retries on the one-phase path.
	for _, c := range cells {
		if c.Error == "" && c.Workload == Swap && c.Impl == "epochal-commute" {
			rec := ""
			if c.RecomputesPerOp != nil {
				rec = fmt.Sprintf(" (and %.3f commute values computed again on a stale base)", *c.RecomputesPerOp)
			}
			goals = append(goals, Goal{
				Name:     fmt.Sprintf("%s: epochal-commute 0 retries (one-phase path)", regime(c)),
				Status:   status(c.RetriesPerOp == 0),
				Measured: fmt.Sprintf("%.3f retries per commit%s", c.RetriesPerOp, rec),
			})
		}
	}
	return goals
}
