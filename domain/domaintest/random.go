// Package domaintest makes domain values for tests of the packages that store, decode and
// write them: events of every type with every field filled at random.
package domaintest

import (
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"time"

	"shadowbridge/domain"
)

// RandomEvent returns an event of the named type with every field set at random: each string,
// number, time, attribute map and list present, empty or nil, values of every type the domain
// allows and now and then a float64 (including ones encoding/json writes with an exponent, and
// NaN, which it refuses). It walks the struct by reflection, so a field added to an event later
// is filled too. It panics on an unknown type name.
func RandomEvent(rng *rand.Rand, name string) domain.Event {
	ptr, ok := domain.NewEvent(name)
	if !ok {
		panic("domaintest: domain.NewEvent does not know " + name)
	}
	v := reflect.ValueOf(ptr).Elem()
	fill(rng, v)
	return v.Interface().(domain.Event)
}

var strings = []string{"", "anne", "Anne Smith", `a"b\c`, "<b>&amp;</b>", "\x00\n\t\u2028", "zoë", "\xff\xfe", "AccountObjectClass"}

func fill(rng *rand.Rand, v reflect.Value) {
	switch v.Type() {
	case reflect.TypeFor[time.Time]():
		switch rng.IntN(4) {
		case 0: // zero
		case 1:
			v.Set(reflect.ValueOf(time.Unix(rng.Int64N(4e9), 0).UTC()))
		default:
			zone := time.FixedZone("z", (rng.IntN(48)-24)*1800)
			v.Set(reflect.ValueOf(time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).In(zone)))
		}
		return
	case reflect.TypeFor[domain.Attributes]():
		if rng.IntN(4) == 0 {
			return // nil
		}
		a := domain.Attributes{}
		for range rng.IntN(4) {
			a[strings[rng.IntN(len(strings))]] = values(rng)
		}
		v.Set(reflect.ValueOf(a))
		return
	case reflect.TypeFor[domain.Changes]():
		if rng.IntN(4) == 0 {
			return
		}
		c := domain.Changes{}
		for range rng.IntN(4) {
			c[strings[rng.IntN(len(strings))]] = domain.AttributeChange{Add: values(rng), Delete: values(rng), Replace: values(rng)}
		}
		v.Set(reflect.ValueOf(c))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(strings[rng.IntN(len(strings))])
	case reflect.Bool:
		v.SetBool(rng.IntN(2) == 0)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt([]int64{0, 1, -1, 42, 300, -70000, 1 << 40, 1 << 62}[rng.IntN(8)])
	case reflect.Slice:
		if rng.IntN(3) == 0 {
			return
		}
		s := reflect.MakeSlice(v.Type(), rng.IntN(3), 3)
		for i := range s.Len() {
			fill(rng, s.Index(i))
		}
		v.Set(s)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(rng, v.Field(i))
			}
		}
	case reflect.Pointer:
		if rng.IntN(2) == 0 {
			p := reflect.New(v.Type().Elem())
			fill(rng, p.Elem())
			v.Set(p)
		}
	case reflect.Map:
		if rng.IntN(3) == 0 {
			return
		}
		m := reflect.MakeMap(v.Type())
		for range rng.IntN(3) {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(rng, k)
			fill(rng, e)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	default:
		panic("domaintest: no rule for " + v.Type().String())
	}
}

// values is a value list as the domain holds them (nil, empty, strings, int64s, bools), with now
// and then a float64.
func values(rng *rand.Rand) []any {
	switch rng.IntN(5) {
	case 0:
		return nil
	case 1:
		return []any{}
	}
	var vs []any
	for range 1 + rng.IntN(3) {
		switch rng.IntN(6) {
		case 0:
			vs = append(vs, strings[rng.IntN(len(strings))])
		case 1:
			vs = append(vs, rng.Int64()-rng.Int64())
		case 2:
			vs = append(vs, rng.IntN(2) == 0)
		case 3:
			vs = append(vs, []float64{0.5, 1e21, 1e-7, 42, -3.25, math.NaN()}[rng.IntN(6)])
		case 4:
			vs = append(vs, []int64{0, 5, 127, 128, -33, 70000, math.MaxInt64, math.MinInt64}[rng.IntN(8)])
		default:
			vs = append(vs, "user"+strconv.Itoa(rng.IntN(100)))
		}
	}
	return vs
}
