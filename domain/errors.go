package domain

import (
	"errors"
	"fmt"
)

// Category classifies a failure the way midPoint's provisioning does, so that callers decide what to
// do (retry, reject, report) without parsing messages. A Category is itself an error: test with
// errors.Is(err, domain.CategoryNotFound).
type Category string

// The categories. Communication errors are the only ones that postpone an operation for a retry.
const (
	CategoryCommunication Category = "communication"
	CategorySchema        Category = "schema"
	CategoryConfiguration Category = "configuration"
	CategorySecurity      Category = "security"
	CategoryAlreadyExists Category = "already-exists"
	CategoryNotFound      Category = "not-found"
	CategoryConflict      Category = "conflict"
	CategoryGeneric       Category = "generic"
)

func (c Category) Error() string { return string(c) }

// Error is a domain failure with its category. Sentinel values below are compared with errors.Is;
// wrapping adds the operation and the details.
type Error struct {
	Category Category
	Message  string
}

func (e *Error) Error() string { return e.Message }

// Is makes errors.Is(err, SomeCategory) true for every Error of that category.
func (e *Error) Is(target error) bool {
	c, ok := target.(Category)
	return ok && c == e.Category
}

// IsRefusal reports whether err refuses a command because of the state it met (a shadow or an
// operation not found, an identifier already used, a conflicting operation), as opposed to a
// malformed command (schema) or no decision at all (communication). The same command may be
// decided otherwise later, so a request id answered with a refusal must record it to keep that
// answer.
func IsRefusal(err error) bool {
	return errors.Is(err, CategoryNotFound) || errors.Is(err, CategoryAlreadyExists) || errors.Is(err, CategoryConflict)
}

func newError(c Category, msg string) *Error { return &Error{Category: c, Message: msg} }

// Sentinel errors returned by Decide and the constructors. They are wrapped with the operation and
// the offending detail, e.g. "add: attribute value not allowed: attribute \"size\" ...".
var (
	ErrInvalidResource      = newError(CategoryConfiguration, "invalid resource definition")
	ErrUnknownResource      = newError(CategorySchema, "unknown resource")
	ErrUnknownObjectClass   = newError(CategorySchema, "unknown object class")
	ErrMissingObjectClass   = newError(CategorySchema, "objectClass is required")
	ErrNoAttributes         = newError(CategorySchema, "no attributes")
	ErrMissingIdentifier    = newError(CategorySchema, "missing secondary identifier")
	ErrInvalidValue         = newError(CategorySchema, "attribute value not allowed")
	ErrEmptyChanges         = newError(CategorySchema, "empty changes")
	ErrInvalidChange        = newError(CategorySchema, "invalid change")
	ErrInvalidResult        = newError(CategorySchema, "invalid result status")
	ErrInvalidID            = newError(CategorySchema, "invalid identifier")
	ErrInvalidCommand       = newError(CategorySchema, "invalid command")
	ErrShadowNotFound       = newError(CategoryNotFound, "shadow not found")
	ErrOperationNotFound    = newError(CategoryNotFound, "operation not found")
	ErrShadowExists         = newError(CategoryAlreadyExists, "shadow already exists")
	ErrIdentifierTaken      = newError(CategoryAlreadyExists, "identifier already in use")
	ErrShadowDead           = newError(CategoryConflict, "shadow is dead")
	ErrDeletePending        = newError(CategoryConflict, "delete already pending")
	ErrOperationFinished    = newError(CategoryConflict, "operation already completed")
	ErrIdentifierImmutable  = newError(CategorySchema, "primary identifier cannot be changed")
	ErrAttemptOutOfSequence = newError(CategoryConflict, "attempt out of sequence")
	ErrNotCancellable       = newError(CategoryConflict, "operation cannot be cancelled")
)

func wrap(op string, err error, format string, args ...any) error {
	if format == "" {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w: %s", op, err, fmt.Sprintf(format, args...))
}
