package amqp10

import "testing"

// The credit window keeps about budget bytes ahead of the handler: many small messages open it
// up to the most messages allowed, large ones close it down to what the budget holds (at least
// one), and it is topped up only when half of it is used.
func TestCreditWindow(t *testing.T) {
	w := newCreditWindow(1<<20, 1000)
	if n := w.topUp(); n != 16 {
		t.Fatalf("first credit %d, want 16 (budget / (budget/16))", n)
	}
	if n := w.topUp(); n != 0 {
		t.Fatalf("credit issued again with all of it outstanding: %d", n)
	}
	for range 8 {
		w.received(200)
	}
	if n := w.topUp(); n == 0 || w.outstanding > 1000 {
		t.Fatalf("after half used: topUp %d, outstanding %d", n, w.outstanding)
	}
	for range 2000 { // a long run of small confirmations
		w.received(200)
		w.topUp()
	}
	if w.want() != 1000 {
		t.Fatalf("small messages: window %d, want the most (1000)", w.want())
	}
	w.received(40 << 10) // a page of a listing
	if want := (1 << 20) / (40 << 10); w.want() != want {
		t.Fatalf("after a 40 KiB message: window %d, want %d", w.want(), want)
	}
	w.received(4 << 20) // larger than the whole budget
	if w.want() != 1 {
		t.Fatalf("after a message larger than the budget: window %d, want 1", w.want())
	}
	for range 20 {
		w.received(200)
	}
	if w.want() > 1 {
		t.Fatalf("the estimate forgot a 4 MiB message after 20 small ones: window %d", w.want())
	}
	if w.outstanding < 0 {
		t.Fatalf("outstanding %d", w.outstanding)
	}
}
