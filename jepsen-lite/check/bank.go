package check

import (
	"fmt"
	"sort"
	"strings"
)

// BankConfig configures the bank checker.
type BankConfig struct {
	Accounts []int // every account a read must show
	Total    int   // what the balances must sum to
}

// BankChecker checks a bank history: ops F "transfer" (BankValue From,
// To, Amount; ok or fail, or info) and F "read" (BankValue.Balances, one
// snapshot). Every ok read must show exactly the configured accounts
// ("wrong-accounts"), summing to Total ("wrong-total"), none negative
// ("negative-balance"). The witness is the read.
type BankChecker struct {
	Config BankConfig
}

// NewBankChecker returns a bank checker for accounts summing to total.
func NewBankChecker(accounts []int, total int) *BankChecker {
	return &BankChecker{Config: BankConfig{Accounts: accounts, Total: total}}
}

// Name implements Checker.
func (c *BankChecker) Name() string { return "bank" }

// Check implements Checker.
func (c *BankChecker) Check(h []Op) Result {
	res := Result{Checker: c.Name()}
	var ps []OpPair
	for _, p := range PairOps(h) {
		if p.Invoke.F == "transfer" || p.Invoke.F == "read" {
			ps = append(ps, p)
		}
	}
	ckCountTypes(&res, ps)
	want := map[int]bool{}
	for _, a := range c.Config.Accounts {
		want[a] = true
	}
	for _, p := range ps {
		if p.Invoke.F != "read" || p.Type() != OK {
			continue
		}
		var v BankValue
		if err := p.Complete.Decode(&v); err != nil {
			res.Anomalies = append(res.Anomalies, Anomaly{Name: "malformed", Explain: err.Error(), Ops: []Op{p.Complete}})
			continue
		}
		read := fmt.Sprintf("read (%s) = %s", ckOpRef(p), ckFmtBalances(v.Balances))
		var missing, extra []int
		for _, a := range c.Config.Accounts {
			if _, ok := v.Balances[a]; !ok {
				missing = append(missing, a)
			}
		}
		sum := 0
		var neg []string
		for _, a := range ckSortedKeys(v.Balances) {
			b := v.Balances[a]
			sum += b
			if !want[a] {
				extra = append(extra, a)
			}
			if b < 0 {
				neg = append(neg, fmt.Sprintf("account %d = %d", a, b))
			}
		}
		if len(missing) > 0 || len(extra) > 0 {
			var why []string
			if len(missing) > 0 {
				why = append(why, "misses accounts "+ckFmtList(missing))
			}
			if len(extra) > 0 {
				why = append(why, "shows unknown accounts "+ckFmtList(extra))
			}
			res.Anomalies = append(res.Anomalies, Anomaly{Name: "wrong-accounts",
				Explain: fmt.Sprintf("%s %s (want accounts %s)", read, strings.Join(why, " and "), ckFmtList(c.Config.Accounts)),
				Ops:     []Op{p.Complete}})
		}
		if sum != c.Config.Total {
			res.Anomalies = append(res.Anomalies, Anomaly{Name: "wrong-total",
				Explain: fmt.Sprintf("%s sums to %d, not %d", read, sum, c.Config.Total),
				Ops:     []Op{p.Complete}})
		}
		if len(neg) > 0 {
			res.Anomalies = append(res.Anomalies, Anomaly{Name: "negative-balance",
				Explain: fmt.Sprintf("%s has %s", read, strings.Join(neg, ", ")),
				Ops:     []Op{p.Complete}})
		}
	}
	return ckFinish(&res)
}

func ckFmtBalances(b map[int]int) string {
	ks := make([]int, 0, len(b))
	for k := range b {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	var s strings.Builder
	s.WriteByte('{')
	for i, k := range ks {
		if i > 0 {
			s.WriteString(", ")
		}
		fmt.Fprintf(&s, "%d: %d", k, b[k])
	}
	s.WriteByte('}')
	return s.String()
}
