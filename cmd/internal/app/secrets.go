package app

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// LoadSecrets fills the passwords and the token that the configuration keeps outside itself:
// a *File key (nats.passwordFile, http.tokenFile, target.amqp.passwordFile) names a file that
// holds the secret (a trailing newline is dropped); a relative name is looked up in
// $CREDENTIALS_DIRECTORY when systemd set it (LoadCredential=), in the working directory
// otherwise. The environment may give them too: SHADOWBRIDGE_HTTP_TOKEN (or _FILE) and
// SHADOWBRIDGE_NATS_PASSWORD_FILE. A secret given twice (in the file and inline) is an error;
// errors name the key and the file, never what it holds. getenv reads the environment.
func (c *Config) LoadSecrets(getenv func(string) string) error {
	var errs []error
	read := func(key, file string, into *string) {
		if file == "" {
			return
		}
		if *into != "" {
			errs = append(errs, fmt.Errorf("%s: give the secret inline or in a file, not both", key))
			return
		}
		v, err := readSecret(file, getenv("CREDENTIALS_DIRECTORY"))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
			return
		}
		*into = v
	}
	if f := getenv("SHADOWBRIDGE_NATS_PASSWORD_FILE"); f != "" && c.NATS.PasswordFile == "" {
		c.NATS.PasswordFile = f
	}
	if t := getenv("SHADOWBRIDGE_HTTP_TOKEN"); t != "" {
		c.HTTP.Token = t
	} else if f := getenv("SHADOWBRIDGE_HTTP_TOKEN_FILE"); f != "" && c.HTTP.TokenFile == "" {
		c.HTTP.TokenFile = f
	}
	read("nats.passwordFile", c.NATS.PasswordFile, &c.NATS.Password)
	read("http.tokenFile", c.HTTP.TokenFile, &c.HTTP.Token)
	for i := range c.Resources {
		if a := c.Resources[i].Target.AMQP; a != nil {
			read(fmt.Sprintf("resources[%d] (%s): target.amqp.passwordFile", i, c.Resources[i].Name), a.PasswordFile, &a.Password)
		}
	}
	return errors.Join(errs...)
}

// readSecret reads a secret's file (relative: in dir when dir is set).
func readSecret(file, dir string) (string, error) {
	if !filepath.IsAbs(file) && dir != "" {
		file = filepath.Join(dir, file)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is named once, below
		}
		return "", fmt.Errorf("read %s: %w", file, err)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("%s is empty", file)
	}
	return v, nil
}
