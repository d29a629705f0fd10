package projections

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends h as encoding/json writes it (json.Marshal, HTML-safe escaping, the same
// field order and omissions), without reflection over the envelope, nor over the event for the
// events of AuditJSON (written from their stored bytes): audit writes millions of them. Safe
// for concurrent use, except on AuditJSON's events, written from their record (one goroutine at
// a time, as AuditJSON does).
func (h HistoryEvent) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, h.Seq, 10)
	b = append(b, `,"time":"`...)
	b = h.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","type":`...)
	b = appendJSONString(b, h.Type)
	b = append(b, `,"resource":`...)
	b = appendJSONString(b, h.Resource)
	b = append(b, `,"shadowId":`...)
	b = appendJSONString(b, h.ShadowID)
	for _, f := range [...]struct{ name, v string }{{`,"objectClass":`, h.ObjectClass}, {`,"operationId":`, h.OperationID}, {`,"operation":`, h.Operation}} {
		if f.v != "" {
			b = append(b, f.name...)
			b = appendJSONString(b, f.v)
		}
	}
	if h.Attempt != 0 {
		b = append(b, `,"attempt":`...)
		b = strconv.AppendInt(b, int64(h.Attempt), 10)
	}
	if h.RequestID != "" {
		b = append(b, `,"requestId":`...)
		b = appendJSONString(b, h.RequestID)
	}
	if h.Outcome != "" {
		b = append(b, `,"outcome":`...)
		b = appendJSONString(b, h.Outcome)
	}
	b = append(b, `,"event":`...)
	var err error
	switch {
	case h.Event != nil:
		// A decoded event (HistoryOf): encoding/json itself. Audit writes its events from their
		// stored bytes (AuditJSON) and is the only caller that writes many.
		var ev []byte
		if ev, err = json.Marshal(h.Event); err == nil {
			b = append(b, ev...)
		}
	case h.rec != nil:
		b, err = h.rec.AppendEventJSON(b, h.idx) // AuditJSON: written from the stored bytes
	default:
		b = append(b, "null"...)
	}
	if err != nil {
		return b, err
	}
	return append(b, '}'), nil
}

// appendJSONString writes s quoted: plain printable ASCII as it is, anything else (quotes,
// backslashes, HTML's <, > and &, control characters, non-ASCII) through json.Marshal, so the
// escaping is encoding/json's own.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
