package backendtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/internal/engine"
	"github.com/epochal/epochal/refs"
	"github.com/epochal/epochal/stm"
	"github.com/epochal/epochal/txn"
)

// Linearizability of one ref holding an int, checked with porcupine against
// a register with compare-and-set.

const (
	linClients = 4
	linOps     = 30 // per client
	// linCheckTimeout bounds porcupine's search; a timeout is an unknown
	// result, never a pass.
	linCheckTimeout = 5 * time.Second
)

type regKind int

const (
	regRead regKind = iota
	regWrite
	regCAS
)

// regInput is an operation on the register: read, write Value, or
// compare-and-set Value -> New.
type regInput struct {
	Kind     regKind
	Value    int
	New      int
	ViaDeref bool // a read made with Deref, outside a transaction
}

// regOutput is what an operation returned: the value read (read, and the
// value a CAS found) and whether a CAS swapped.
type regOutput struct {
	Value int
	OK    bool
}

// registerModel is a register with compare-and-set, starting at init. A
// CAS reports the value it compared against, so a failed CAS is a read.
func registerModel(init int) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return init },
		Step: func(state, input, output any) (bool, any) {
			s, in, out := state.(int), input.(regInput), output.(regOutput)
			switch in.Kind {
			case regRead:
				return out.Value == s, s
			case regWrite:
				return true, in.Value
			default:
				if s == in.Value {
					return out.OK && out.Value == s, in.New
				}
				return !out.OK && out.Value == s, s
			}
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(regInput), output.(regOutput)
			switch in.Kind {
			case regRead:
				if in.ViaDeref {
					return fmt.Sprintf("deref() -> %d", out.Value)
				}
				return fmt.Sprintf("get() -> %d", out.Value)
			case regWrite:
				return fmt.Sprintf("set(%d)", in.Value)
			default:
				return fmt.Sprintf("cas(%d -> %d) -> %v (found %d)", in.Value, in.New, out.OK, out.Value)
			}
		},
		DescribeState: func(state any) string { return fmt.Sprint(state) },
	}
}

// testLinearizable: porcupine checks of single-ref histories, with reads
// in transactions and with Deref, on the fast path, the general path and
// with the ref in a backend other than the coordinator; and a negative
// control showing the model rejects histories that are not linearizable.
func testLinearizable(t *testing.T, newDriver NewDriver) {
	t.Run("ModelRejects", testRegisterModelRejects)
	for _, general := range []bool{false, true} {
		name := "BrokenEngineCaught/OnePhase"
		if general {
			name = "BrokenEngineCaught/General"
		}
		t.Run(name, func(t *testing.T) { testRegisterBroken(t, newDriver, general) })
	}
	for _, reads := range []string{"Get", "Deref"} {
		for _, path := range []string{"OnePhase", "General", "OtherBackend"} {
			t.Run(reads+"/"+path, func(t *testing.T) {
				b1 := newDriver(t)
				var opts []stm.Option
				var ropts []refs.Option
				switch path {
				case "General":
					opts = append(opts, engine.WithGeneralPath())
				case "OtherBackend":
					ropts = append(ropts, refs.On(newDriver(t)))
				}
				testRegister(t, b1, reads == "Deref", opts, ropts)
			})
		}
	}
}

// testRegister runs linClients goroutines of linOps random operations on
// one ref and checks the history.
func testRegister(t *testing.T, b backend.Driver, deref bool, opts []stm.Option, ropts []refs.Option) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := stm.Open(ctx, b, append([]stm.Option{stm.WithBackoff(20*time.Microsecond, 2*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const init = 0
	r, err := refs.New(ctx, s, modelPrefix("lin")+"/reg", init, ropts...)
	if err != nil {
		t.Fatal(err)
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)

	// Logical time: an operation's call is stamped before it starts and
	// its return after it ends, from one counter, so "a returned before b
	// was called" holds exactly when a.Return < b.Call.
	var now atomic.Int64
	ops := make([][]porcupine.Operation, linClients)
	errs := make([]error, linClients)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for c := range linClients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(c)))
			last := init // the value this client saw last: a likely CAS hit
			<-start
			for i := range linOps {
				fresh := (c+1)*1000 + i // values written are unique
				var in regInput
				switch k := rng.IntN(10); {
				case k < 4:
					in = regInput{Kind: regRead, ViaDeref: deref}
				case k < 7:
					in = regInput{Kind: regWrite, Value: fresh}
				default:
					exp := last
					if rng.IntN(4) == 0 {
						exp = init
					}
					in = regInput{Kind: regCAS, Value: exp, New: fresh}
				}
				runtime.Gosched() // mix the clients' operations up
				call := now.Add(1)
				out, err := registerOp(ctx, s, r, in)
				ret := now.Add(1)
				if err != nil {
					errs[c] = fmt.Errorf("client %d op %d %+v: %w", c, i, in, err)
					return
				}
				last = out.Value
				if in.Kind == regWrite {
					last = in.Value
				}
				if in.Kind == regCAS && out.OK {
					last = in.New
				}
				ops[c] = append(ops[c], porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret})
			}
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("an operation failed (none may, on a healthy backend): %v", err)
		}
	}
	var history []porcupine.Operation
	for _, o := range ops {
		history = append(history, o...)
	}
	checkLinearizable(t, registerModel(init), history)
	t.Logf("%d operations, %d pairs of them concurrent; engine stats %+v", len(history), concurrentPairs(history), s.Stats())
}

// concurrentPairs counts pairs of operations whose intervals overlap: a check
// of a history without any would prove little.
func concurrentPairs(h []porcupine.Operation) int {
	n := 0
	for i := range h {
		for j := i + 1; j < len(h); j++ {
			if h[i].Call < h[j].Return && h[j].Call < h[i].Return {
				n++
			}
		}
	}
	return n
}

// registerOp performs one operation through the public API. The yields
// inside the transactions (hints to the scheduler, not waits) make
// operations overlap, so that the history tests concurrency.
func registerOp(ctx context.Context, s *stm.STM, r *refs.Ref[int], in regInput) (regOutput, error) {
	var out regOutput
	switch in.Kind {
	case regRead:
		if in.ViaDeref {
			v, err := r.Deref(ctx)
			return regOutput{Value: v}, err
		}
		err := s.Dosync(ctx, func(tx *txn.Tx) error {
			out = regOutput{Value: r.Get(tx)}
			runtime.Gosched()
			return nil
		})
		return out, err
	case regWrite:
		return out, s.Dosync(ctx, func(tx *txn.Tx) error {
			runtime.Gosched()
			r.Set(tx, in.Value)
			return nil
		})
	default:
		err := s.Dosync(ctx, func(tx *txn.Tx) error {
			out = regOutput{Value: r.Get(tx)}
			runtime.Gosched() // widen the read-to-commit window
			if out.Value == in.Value {
				r.Set(tx, in.New)
				out.OK = true
			}
			return nil
		})
		return out, err
	}
}

// checkLinearizable fails t if porcupine finds history illegal, writing its
// visualisation to a file named in the failure. A timeout is logged as an
// unknown result: not a failure, and not a pass either.
func checkLinearizable(t *testing.T, model porcupine.Model, history []porcupine.Operation) {
	t.Helper()
	res, info := porcupine.CheckOperationsVerbose(model, history, linCheckTimeout)
	switch res {
	case porcupine.Ok:
	case porcupine.Unknown:
		t.Logf("porcupine timed out after %v on %d operations: linearizability unknown (not a pass)", linCheckTimeout, len(history))
	default:
		path := filepath.Join(t.ArtifactDir(), "linearizability.html")
		if err := porcupine.VisualizePath(model, info, path); err != nil {
			path = fmt.Sprintf("(visualisation failed: %v)", err)
		}
		var b strings.Builder
		for _, op := range history {
			fmt.Fprintf(&b, "  client %d [%d, %d] %s\n", op.ClientId, op.Call, op.Return, model.DescribeOperation(op.Input, op.Output))
		}
		t.Fatalf("porcupine: history of %d operations is %s (not linearizable); visualisation: %s\n%s", len(history), res, path, b.String())
	}
}

// testRegisterBroken runs, by construction rather than by timing, a CAS
// whose read is followed by a write of another transaction before it
// commits (a nested independent Dosync), then a read. On the correct engine
// the CAS retries, sees the write and fails, and the history must be Ok;
// with the read-point check skipped the CAS commits over the write, and
// porcupine must call the history Illegal.
func testRegisterBroken(t *testing.T, newDriver NewDriver, general bool) {
	for _, broken := range []bool{false, true} {
		opts := []stm.Option{}
		if general {
			opts = append(opts, engine.WithGeneralPath())
		}
		if broken {
			opts = append(opts, engine.WithFaults(engine.Faults{SkipReadPointCheck: true}))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s, err := stm.Open(ctx, newDriver(t), opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		r, err := refs.New(ctx, s, modelPrefix("lin")+"/reg", 0)
		if err != nil {
			t.Fatal(err)
		}
		var now int64
		tick := func() int64 { now++; return now }
		var history []porcupine.Operation
		record := func(client int, call int64, in regInput, out regOutput) {
			history = append(history, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: tick()})
		}
		cas := regInput{Kind: regCAS, Value: 0, New: 1}
		var out regOutput
		first := true
		call := tick()
		err = s.Dosync(ctx, func(tx *txn.Tx) error {
			out = regOutput{Value: r.Get(tx)}
			if first {
				first = false
				wcall := tick()
				w := regInput{Kind: regWrite, Value: 5}
				if _, err := registerOp(ctx, s, r, w); err != nil {
					return err
				}
				record(1, wcall, w, regOutput{})
			}
			if out.Value == cas.Value {
				r.Set(tx, cas.New)
				out.OK = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		record(0, call, cas, out)
		rcall := tick()
		v, err := r.Deref(ctx)
		if err != nil {
			t.Fatal(err)
		}
		record(0, rcall, regInput{Kind: regRead, ViaDeref: true}, regOutput{Value: v})

		want := porcupine.Ok
		if broken {
			want = porcupine.Illegal
		}
		model := registerModel(0)
		if got := porcupine.CheckOperationsTimeout(model, history, linCheckTimeout); got != want {
			var b strings.Builder
			for _, op := range history {
				fmt.Fprintf(&b, "  client %d [%d, %d] %s\n", op.ClientId, op.Call, op.Return, model.DescribeOperation(op.Input, op.Output))
			}
			t.Fatalf("broken engine %v: porcupine says %s, want %s:\n%s", broken, got, want, b.String())
		}
	}
}

// testRegisterModelRejects is the negative control: hand-made histories
// that are not linearizable must come out Illegal, and a legal one with
// overlapping operations Ok, so a passing check means something.
func testRegisterModelRejects(t *testing.T) {
	op := func(client int, call, ret int64, in regInput, out regOutput) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
	}
	read := regInput{Kind: regRead}
	write := func(v int) regInput { return regInput{Kind: regWrite, Value: v} }
	cas := func(exp, nv int) regInput { return regInput{Kind: regCAS, Value: exp, New: nv} }
	cases := []struct {
		name string
		want porcupine.CheckResult
		ops  []porcupine.Operation
	}{
		{"ReadOfValueNeverWritten", porcupine.Illegal, []porcupine.Operation{
			op(0, 1, 2, write(1), regOutput{}),
			op(1, 3, 4, read, regOutput{Value: 7}),
		}},
		{"StaleReadAfterCompletedWrite", porcupine.Illegal, []porcupine.Operation{
			op(0, 1, 2, write(1), regOutput{}),
			op(0, 3, 4, write(2), regOutput{}),
			op(1, 5, 6, read, regOutput{Value: 1}),
		}},
		{"ReadGoesBackwards", porcupine.Illegal, []porcupine.Operation{
			op(0, 1, 10, write(1), regOutput{}),
			op(1, 2, 3, read, regOutput{Value: 1}),
			op(2, 4, 5, read, regOutput{Value: 0}),
		}},
		{"TwoCASWinnersOnOneValue", porcupine.Illegal, []porcupine.Operation{
			op(0, 1, 4, cas(0, 1), regOutput{Value: 0, OK: true}),
			op(1, 2, 5, cas(0, 2), regOutput{Value: 0, OK: true}),
		}},
		{"CASFailsOnMatchingValue", porcupine.Illegal, []porcupine.Operation{
			op(0, 1, 2, write(3), regOutput{}),
			op(1, 3, 4, cas(3, 4), regOutput{Value: 3, OK: false}),
		}},
		{"OverlappingOpsLegal", porcupine.Ok, []porcupine.Operation{
			op(0, 1, 10, write(1), regOutput{}),
			op(1, 2, 3, read, regOutput{Value: 0}),
			op(2, 4, 5, read, regOutput{Value: 1}),
			op(1, 6, 12, cas(1, 2), regOutput{Value: 1, OK: true}),
			op(2, 7, 8, read, regOutput{Value: 1}),
			op(0, 13, 14, read, regOutput{Value: 2}),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := porcupine.CheckOperationsTimeout(registerModel(0), tc.ops, linCheckTimeout); got != tc.want {
				t.Fatalf("porcupine says %s, want %s", got, tc.want)
			}
		})
	}
}
