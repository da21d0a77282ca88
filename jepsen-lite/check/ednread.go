package check

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf8"
)

// An EDN reader, enough for Jepsen's and Elle's histories: nil, booleans,
// integers (an N suffix allowed), floats, strings, characters, keywords,
// symbols, lists, vectors, maps, sets, tagged values (#inst "...",
// #jepsen.history.Op{...}: the tag is dropped), #_ discards, ; comments,
// and commas as whitespace.

// ednKind is the kind of an EDN value.
type ednKind uint8

const (
	eNil ednKind = iota
	eBool
	eInt
	eBigInt // an integer that does not fit in int64
	eFloat
	eString
	eChar
	eKeyword
	eSymbol
	eList
	eVector
	eMap
	eSet
)

// ednVal is one EDN value and where it began.
type ednVal struct {
	kind ednKind
	b    bool
	i    int64
	s    string   // string, character, keyword or symbol (without ':'), number text
	kids []ednVal // list, vector, set; map: key, value, key, value, ...
	tag  string   // the tag it was read with, if any
	line int
	col  int
}

// describe names v for an error message: its kind and, for a short
// scalar, its text.
func (v ednVal) describe() string {
	switch v.kind {
	case eNil:
		return "nil"
	case eBool, eInt, eBigInt, eFloat, eKeyword, eSymbol, eChar:
		return kindName[v.kind] + " " + v.text()
	case eString:
		t := v.text()
		if len(t) > 40 {
			t = t[:37] + `..."`
		}
		return "string " + t
	}
	return fmt.Sprintf("%s of %d", kindName[v.kind], v.count())
}

// count is a collection's number of elements (a map's entries).
func (v ednVal) count() int {
	if v.kind == eMap {
		return len(v.kids) / 2
	}
	return len(v.kids)
}

var kindName = [...]string{
	eNil: "nil", eBool: "boolean", eInt: "integer", eBigInt: "integer", eFloat: "float",
	eString: "string", eChar: "character", eKeyword: "keyword", eSymbol: "symbol",
	eList: "list", eVector: "vector", eMap: "map", eSet: "set",
}

// text renders v back as EDN, compactly (maps' entries in the order
// read).
func (v ednVal) text() string {
	var b strings.Builder
	v.write(&b)
	return b.String()
}

func (v ednVal) write(b *strings.Builder) {
	switch v.kind {
	case eNil:
		b.WriteString("nil")
	case eBool:
		b.WriteString(strconv.FormatBool(v.b))
	case eInt:
		b.WriteString(strconv.FormatInt(v.i, 10))
	case eBigInt, eFloat, eSymbol:
		b.WriteString(v.s)
	case eString:
		b.WriteString(ednString(v.s))
	case eChar:
		b.WriteString(`\`)
		b.WriteString(v.s)
	case eKeyword:
		b.WriteString(":")
		b.WriteString(v.s)
	case eList, eVector, eSet, eMap:
		delims := ednDelims[v.kind]
		b.WriteString(delims[0])
		for i, k := range v.kids {
			switch {
			case i == 0:
			case v.kind == eMap && i%2 == 0:
				b.WriteString(", ")
			default:
				b.WriteByte(' ')
			}
			k.write(b)
		}
		b.WriteString(delims[1])
	}
}

// ednDelims are a collection's opening and closing delimiters.
var ednDelims = map[ednKind][2]string{eList: {"(", ")"}, eVector: {"[", "]"}, eSet: {"#{", "}"}, eMap: {"{", "}"}}

// isSeq: a list or a vector (Clojure's sequential collections, equal
// when their elements are).
func (v ednVal) isSeq() bool { return v.kind == eList || v.kind == eVector }

// name is a keyword's, symbol's or string's text ("" for anything else):
// Jepsen writes :f and micro-op names as keywords, JSON as strings.
func (v ednVal) name() string {
	switch v.kind {
	case eKeyword, eSymbol, eString:
		return v.s
	}
	return ""
}

// get looks a keyword key up in a map.
func (v ednVal) get(key string) (ednVal, bool) {
	for i := 0; i+1 < len(v.kids); i += 2 {
		if k := v.kids[i]; k.kind == eKeyword && k.s == key {
			return v.kids[i+1], true
		}
	}
	return ednVal{}, false
}

// ednError is a malformed history: where, and what was expected.
type ednError struct {
	name      string // the file's name
	line, col int
	msg       string
}

func (e *ednError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.name, e.line, e.col, e.msg)
}

// ednReader reads EDN forms from src.
type ednReader struct {
	name      string
	src       []byte
	off       int
	line, col int // of src[off], from 1
}

func newEDNReader(name string, src []byte) *ednReader {
	return &ednReader{name: name, src: src, line: 1, col: 1}
}

func (r *ednReader) errAt(line, col int, format string, args ...any) error {
	return &ednError{name: r.name, line: line, col: col, msg: fmt.Sprintf(format, args...)}
}

func (r *ednReader) errf(format string, args ...any) error {
	return r.errAt(r.line, r.col, format, args...)
}

// advance moves past n bytes of the current line (no newline among them).
func (r *ednReader) advance(n int) {
	r.col += utf8.RuneCount(r.src[r.off : r.off+n])
	r.off += n
}

// skip passes whitespace, commas and comments.
func (r *ednReader) skip() {
	for r.off < len(r.src) {
		switch c := r.src[r.off]; c {
		case '\n':
			r.off++
			r.line++
			r.col = 1
		case ' ', '\t', '\r', ',', '\f':
			r.off++
			r.col++
		case ';':
			for r.off < len(r.src) && r.src[r.off] != '\n' {
				r.off++
			}
		default:
			if c == 0xEF && r.off == 0 && len(r.src) >= 3 && r.src[1] == 0xBB && r.src[2] == 0xBF { // a BOM
				r.off += 3
				continue
			}
			return
		}
	}
}

// more reports whether a form follows (after whitespace and comments).
func (r *ednReader) more() bool {
	r.skip()
	return r.off < len(r.src)
}

const ednMaxDepth = 1000

// read reads the next form. At the end of the input it fails.
func (r *ednReader) read(depth int) (ednVal, error) {
	for {
		r.skip()
		if r.off >= len(r.src) {
			return ednVal{}, r.errf("unexpected end of input: want a value")
		}
		if depth > ednMaxDepth {
			return ednVal{}, r.errf("values nested more than %d deep", ednMaxDepth)
		}
		line, col := r.line, r.col
		c := r.src[r.off]
		switch {
		case c == '(' || c == '[' || c == '{':
			r.advance(1)
			switch c {
			case '(':
				return r.readColl(eList, ')', line, col, depth)
			case '[':
				return r.readColl(eVector, ']', line, col, depth)
			}
			return r.readColl(eMap, '}', line, col, depth)
		case c == ')' || c == ']' || c == '}':
			return ednVal{}, r.errf("unexpected %q: want a value", c)
		case c == '"':
			return r.readString(line, col)
		case c == '\\':
			return r.readChar(line, col)
		case c == '#':
			if r.off+1 >= len(r.src) {
				return ednVal{}, r.errf("unexpected end of input after #")
			}
			switch n := r.src[r.off+1]; {
			case n == '{':
				r.advance(2)
				return r.readColl(eSet, '}', line, col, depth)
			case n == '_':
				r.advance(2)
				if _, err := r.read(depth + 1); err != nil {
					return ednVal{}, err
				}
				continue // the discarded form is not a value: read the next
			case n >= 'a' && n <= 'z' || n >= 'A' && n <= 'Z': // a tag begins with a letter
				r.advance(1)
				tag := r.token()
				v, err := r.read(depth + 1)
				if err != nil {
					return ednVal{}, err
				}
				v.tag, v.line, v.col = tag, line, col
				return v, nil
			default:
				return ednVal{}, r.errf("unknown dispatch #%c: want #{...}, #_ or a tag", n)
			}
		case c == ':':
			r.advance(1)
			t := r.token()
			if t == "" {
				return ednVal{}, r.errAt(line, col, "a keyword without a name")
			}
			return ednVal{kind: eKeyword, s: t, line: line, col: col}, nil
		case c >= '0' && c <= '9' || (c == '-' || c == '+') && r.off+1 < len(r.src) && r.src[r.off+1] >= '0' && r.src[r.off+1] <= '9':
			return r.readNumber(line, col)
		case isSymbolStart(c):
			t := r.token()
			switch t {
			case "nil":
				return ednVal{kind: eNil, line: line, col: col}, nil
			case "true", "false":
				return ednVal{kind: eBool, b: t == "true", line: line, col: col}, nil
			}
			return ednVal{kind: eSymbol, s: t, line: line, col: col}, nil
		default:
			ch, _ := utf8.DecodeRune(r.src[r.off:])
			return ednVal{}, r.errf("unexpected %q: want a value", ch)
		}
	}
}

func isSymbolStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80 || strings.IndexByte("*+!-_?<>=./&%$|'", c) >= 0
}

// isDelim ends a token.
func isDelim(c byte) bool {
	return strings.IndexByte(" \t\r\n\f,;()[]{}\"\\", c) >= 0
}

// token reads up to the next delimiter.
func (r *ednReader) token() string {
	i := r.off
	for i < len(r.src) && !isDelim(r.src[i]) && !(r.src[i] == '#' && i == r.off) {
		i++
	}
	t := string(r.src[r.off:i])
	r.advance(i - r.off)
	return t
}

func (r *ednReader) readColl(kind ednKind, end byte, line, col, depth int) (ednVal, error) {
	v := ednVal{kind: kind, line: line, col: col}
	for {
		r.skip()
		if r.off >= len(r.src) {
			return ednVal{}, r.errf("unexpected end of input: the %s opened at %d:%d is not closed (want %q)", kindName[kind], line, col, end)
		}
		if c := r.src[r.off]; c == end {
			r.advance(1)
			break
		} else if c == ')' || c == ']' || c == '}' {
			return ednVal{}, r.errf("unexpected %q: the %s opened at %d:%d wants %q", c, kindName[kind], line, col, end)
		}
		k, err := r.read(depth + 1)
		if err != nil {
			return ednVal{}, err
		}
		v.kids = append(v.kids, k)
	}
	if kind == eMap && len(v.kids)%2 != 0 {
		last := v.kids[len(v.kids)-1]
		return ednVal{}, r.errAt(last.line, last.col, "the map opened at %d:%d has a key (%s) without a value", line, col, last.describe())
	}
	return v, nil
}

func (r *ednReader) readString(line, col int) (ednVal, error) {
	r.advance(1)
	var b strings.Builder
	for {
		if r.off >= len(r.src) {
			return ednVal{}, r.errAt(line, col, "unexpected end of input: the string is not closed (want '\"')")
		}
		c := r.src[r.off]
		switch c {
		case '"':
			r.advance(1)
			return ednVal{kind: eString, s: b.String(), line: line, col: col}, nil
		case '\n':
			b.WriteByte(c)
			r.off++
			r.line++
			r.col = 1
		case '\\':
			if r.off+1 >= len(r.src) {
				return ednVal{}, r.errf("unexpected end of input in a string escape")
			}
			e := r.src[r.off+1]
			switch e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case '"', '\\', '/':
				b.WriteByte(e)
			case 'u':
				if r.off+6 > len(r.src) {
					return ednVal{}, r.errf(`a \u escape wants 4 hex digits`)
				}
				n, err := strconv.ParseUint(string(r.src[r.off+2:r.off+6]), 16, 32)
				if err != nil {
					return ednVal{}, r.errf(`a \u escape wants 4 hex digits, got %q`, r.src[r.off+2:r.off+6])
				}
				b.WriteRune(rune(n))
				r.advance(6)
				continue
			default:
				return ednVal{}, r.errf("unknown string escape \\%c", e)
			}
			r.advance(2)
		default:
			_, n := utf8.DecodeRune(r.src[r.off:])
			b.Write(r.src[r.off : r.off+n])
			r.advance(n)
		}
	}
}

func (r *ednReader) readChar(line, col int) (ednVal, error) {
	r.advance(1)
	if r.off >= len(r.src) {
		return ednVal{}, r.errAt(line, col, "unexpected end of input after \\")
	}
	// One character, or a name (newline, space, tab, uXXXX...).
	_, n := utf8.DecodeRune(r.src[r.off:])
	i := r.off + n
	for i < len(r.src) && !isDelim(r.src[i]) {
		i++
	}
	t := string(r.src[r.off:i])
	r.advance(i - r.off)
	return ednVal{kind: eChar, s: t, line: line, col: col}, nil
}

func (r *ednReader) readNumber(line, col int) (ednVal, error) {
	t := r.token()
	num := t
	if strings.HasSuffix(num, "N") {
		num = num[:len(num)-1]
	}
	if i, err := strconv.ParseInt(num, 10, 64); err == nil {
		return ednVal{kind: eInt, i: i, s: t, line: line, col: col}, nil
	}
	if _, ok := new(big.Int).SetString(num, 10); ok {
		return ednVal{kind: eBigInt, s: t, line: line, col: col}, nil
	}
	f := strings.TrimSuffix(t, "M")
	if _, err := strconv.ParseFloat(f, 64); err == nil {
		return ednVal{kind: eFloat, s: t, line: line, col: col}, nil
	}
	if strings.Contains(num, "/") { // a ratio, 1/2
		if _, ok := new(big.Rat).SetString(num); ok {
			return ednVal{kind: eFloat, s: t, line: line, col: col}, nil
		}
	}
	return ednVal{}, r.errAt(line, col, "malformed number %q", t)
}
