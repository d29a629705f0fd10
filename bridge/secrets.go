package bridge

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"shadowbridge/domain"
)

// CheckURL reports what is wrong with a broker or server URL given in configuration field, in
// words that never repeat the URL (it may carry a password). schemes are the accepted schemes.
func CheckURL(field, raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the whole URL, password included
		}
		return fmt.Errorf("%w: %s: malformed URL: %v", domain.CategoryConfiguration, field, err)
	}
	if !slices.Contains(schemes, u.Scheme) {
		return fmt.Errorf("%w: %s: scheme %q, want %s", domain.CategoryConfiguration, field, u.Scheme, strings.Join(schemes, " or "))
	}
	if u.Host == "" {
		return fmt.Errorf("%w: %s: no host", domain.CategoryConfiguration, field)
	}
	return nil
}

// RedactURL drops the password from a URL for logs, errors and screens. A URL that does not
// parse loses everything before its last "@".
func RedactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	if at := strings.LastIndex(raw, "@"); at >= 0 {
		if i := strings.Index(raw, "://"); i >= 0 && i < at {
			return raw[:i+3] + "***@" + raw[at+1:]
		}
		return "***@" + raw[at+1:]
	}
	return raw
}

// scrubber removes known secrets from error text: a transport library may quote a URL or a
// credential in its errors, and those errors end up in logs, in the event log (lastError) and on
// the dashboard.
type scrubber []string

func newScrubber(password, rawURL string) scrubber {
	var s scrubber
	add := func(secret string) {
		if secret != "" {
			s = append(s, secret, url.QueryEscape(secret), url.PathEscape(secret))
		}
	}
	add(password)
	if u, err := url.Parse(rawURL); err == nil && u.User != nil {
		p, _ := u.User.Password()
		add(p)
	} else if at := strings.LastIndex(rawURL, "@"); at >= 0 {
		// Unparsable: whatever precedes the host may be a secret.
		userinfo := rawURL[:at]
		if i := strings.Index(userinfo, "://"); i >= 0 {
			userinfo = userinfo[i+3:]
		}
		s = append(s, rawURL[:at])
		if _, p, ok := strings.Cut(userinfo, ":"); ok {
			add(p)
		}
	}
	return s
}

func (s scrubber) text(t string) string {
	for _, secret := range s {
		if len(secret) >= 3 { // shorter "secrets" would mangle ordinary words
			t = strings.ReplaceAll(t, secret, "***")
		}
	}
	return t
}

// err returns err with its text scrubbed; errors.Is and errors.As still see the original.
func (s scrubber) err(err error) error {
	if err == nil || len(s) == 0 {
		return err
	}
	if t := err.Error(); s.text(t) != t {
		return &scrubbedError{msg: s.text(t), err: err}
	}
	return err
}

type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }
