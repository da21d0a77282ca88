package check

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// WriteEDN writes a history as EDN, one map per line, as Jepsen and Elle
// read it:
//
//	{:index 0, :type :invoke, :process 0, :f :txn, :value [[:append 3 7] [:r 3 nil]], :time 123}
//
// A txn's micro-ops become vectors with a keyword f; any other value
// becomes EDN data, JSON objects maps with keyword keys ({:k 1, :v 2}),
// or integer keys where the JSON keys are integers (bank balances: {0
// 100, 1 100}); a bank transfer as Jepsen writes it, {:from 0, :to 1,
// :amount 5}. An op's error is written as :error "...". ReadHistory reads
// it back.
func WriteEDN(w io.Writer, h []Op) error {
	bw := bufio.NewWriter(w)
	for _, o := range h {
		bw.WriteString(ednOp(o))
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// ednOp renders one op as an EDN map (no newline).
func ednOp(o Op) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{:index %d, :type %s, :process %d, :f %s, :value %s, :time %d",
		o.Index, ednKeyword(string(o.Type)), o.Process, ednKeyword(o.F), ednValue(o), o.Time)
	if o.Error != "" {
		fmt.Fprintf(&b, ", :error %s", ednString(o.Error))
	}
	if o.Final {
		b.WriteString(", :final true")
	}
	b.WriteByte('}')
	return b.String()
}

func ednValue(o Op) string {
	if len(o.Value) == 0 || string(o.Value) == "null" {
		return "nil"
	}
	if o.F == "txn" {
		var mops []Mop
		if err := json.Unmarshal(o.Value, &mops); err == nil {
			var b strings.Builder
			b.WriteByte('[')
			for i, m := range mops {
				if i > 0 {
					b.WriteByte(' ')
				}
				switch {
				case m.F == "append":
					fmt.Fprintf(&b, "[:append %d %d]", m.K, m.V)
				case m.R == nil:
					fmt.Fprintf(&b, "[%s %d nil]", ednKeyword(m.F), m.K)
				default:
					fmt.Fprintf(&b, "[%s %d [", ednKeyword(m.F), m.K)
					for j, v := range m.R {
						if j > 0 {
							b.WriteByte(' ')
						}
						b.WriteString(strconv.Itoa(v))
					}
					b.WriteString("]]")
				}
			}
			b.WriteByte(']')
			return b.String()
		}
	}
	if o.F == "transfer" {
		// Jepsen's bank shape, every field written (JSON leaves out
		// account 0).
		var v BankValue
		if err := json.Unmarshal(o.Value, &v); err == nil {
			return fmt.Sprintf("{:from %d, :to %d, :amount %d}", v.From, v.To, v.Amount)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(o.Value))
	dec.UseNumber()
	var b strings.Builder
	if err := ednJSON(dec, &b); err != nil {
		return ednString(string(o.Value)) // not JSON: keep it, as a string
	}
	return b.String()
}

// ednJSON converts the next JSON value of dec, keeping objects' key
// order.
func ednJSON(dec *json.Decoder, b *strings.Builder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '[':
			b.WriteByte('[')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					b.WriteByte(' ')
				}
				if err := ednJSON(dec, b); err != nil {
					return err
				}
			}
			b.WriteByte(']')
		case '{':
			b.WriteByte('{')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					b.WriteString(", ")
				}
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				k, _ := kt.(string)
				if _, err := strconv.ParseInt(k, 10, 64); err == nil {
					b.WriteString(k)
				} else {
					b.WriteString(ednKeyword(k))
				}
				b.WriteByte(' ')
				if err := ednJSON(dec, b); err != nil {
					return err
				}
			}
			b.WriteByte('}')
		}
		_, err := dec.Token() // the closing delimiter
		return err
	case json.Number:
		b.WriteString(t.String())
	case string:
		b.WriteString(ednString(t))
	case bool:
		b.WriteString(strconv.FormatBool(t))
	case nil:
		b.WriteString("nil")
	}
	return nil
}

var ednKeywordRE = regexp.MustCompile(`^[A-Za-z*+!_?<>=-][A-Za-z0-9*+!_?<>=.-]*$`)

// ednKeyword renders s as a keyword, or as a string if it cannot be one.
func ednKeyword(s string) string {
	if ednKeywordRE.MatchString(s) {
		return ":" + s
	}
	return ednString(s)
}

// ednString quotes s as an EDN (Clojure) string.
func ednString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == utf8.RuneError && n == 1, r < 0x20, r == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
