package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// checkKeysByTokens is checkKeys as it was, on encoding/json's token reader: the reference the
// byte scanner must agree with on valid JSON.
func checkKeysByTokens(data []byte, known []string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type frame struct {
		object bool
		keys   map[string]bool
		want   bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if top != nil && top.object {
					top.want = true
				}
				stack = append(stack, &frame{object: d == '{', keys: map[string]bool{}, want: d == '{'})
			case '}', ']':
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].object {
					stack[len(stack)-1].want = true
				}
			}
			continue
		}
		if top == nil || !top.object {
			continue
		}
		if !top.want {
			top.want = true
			continue
		}
		key, _ := tok.(string)
		top.want = false
		if top.keys[key] {
			return fmt.Errorf("key %q appears twice in one object", key)
		}
		top.keys[key] = true
		if len(stack) == 1 {
			for _, k := range known {
				if key != k && strings.EqualFold(key, k) {
					return fmt.Errorf("unknown field %q (did you mean %q? names are case-sensitive)", key, k)
				}
			}
		}
	}
}

// randomJSON writes a random JSON value: objects (with keys that repeat, differ in case, hold
// escapes, or are many), arrays, strings that look like keys, numbers and literals.
func randomJSON(rng *rand.Rand, b *strings.Builder, depth int) {
	keys := []string{"requestId", "requestID", "attributes", "a", "A", `q\"uote`, `\u0061`, "é", "login", "x y"}
	switch k := rng.IntN(6); {
	case k < 2 && depth < 4:
		b.WriteByte('{')
		n := rng.IntN(5)
		if rng.IntN(10) == 0 {
			n = 20 + rng.IntN(20)
		}
		for i := range n {
			if i > 0 {
				b.WriteString(", ")
			}
			key := keys[rng.IntN(len(keys))]
			if n > 10 {
				key = fmt.Sprint("k", rng.IntN(n*2))
			}
			fmt.Fprintf(b, "%q :", key)
			if strings.Contains(key, `\`) {
				b.Reset()
				b.WriteString(`{"` + key + `":1,"` + key + `":2}`)
				return
			}
			randomJSON(rng, b, depth+1)
		}
		b.WriteByte('}')
	case k == 2 && depth < 4:
		b.WriteByte('[')
		for i := range rng.IntN(4) {
			if i > 0 {
				b.WriteByte(',')
			}
			randomJSON(rng, b, depth+1)
		}
		b.WriteByte(']')
	case k == 3:
		fmt.Fprintf(b, "%q", keys[rng.IntN(len(keys))])
	case k == 4:
		b.WriteString([]string{"1", "-2.5e3", "0"}[rng.IntN(3)])
	default:
		b.WriteString([]string{"true", "false", "null"}[rng.IntN(3)])
	}
}

// The byte scanner finds what the token reader found, on 50,000 random JSON documents.
func TestCheckKeysAgreesWithTheTokenReader(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	known := []string{"requestId", "attributes", "login"}
	found := 0
	for range 50000 {
		var b strings.Builder
		randomJSON(rng, &b, 0)
		doc := []byte(b.String())
		if !json.Valid(doc) {
			continue
		}
		want, got := checkKeysByTokens(doc, known), checkKeys(doc, known)
		if fmt.Sprint(want) != fmt.Sprint(got) {
			t.Fatalf("%s:\n got %v\nwant %v", doc, got, want)
		}
		if want != nil {
			found++
		}
	}
	if found < 1000 {
		t.Errorf("only %d documents with a repeated or miscased key", found)
	}
	for _, doc := range []string{`{"a":1,"a":2}`, `{"a":{"b":1,"b":2}}`, `[{"x":1},{"x":2}]`, `{"\u0061":1,"a":2}`, `{"RequestId":1}`, `{"a" 1}`, `{"a":"a","b":"a"}`} {
		want, got := checkKeysByTokens([]byte(doc), known), checkKeys([]byte(doc), known)
		if json.Valid([]byte(doc)) && fmt.Sprint(want) != fmt.Sprint(got) {
			t.Errorf("%s: got %v, want %v", doc, got, want)
		}
	}
}
