package api

import (
	"errors"

	"github.com/nats-io/nats.go"

	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
)

// Status codes of error replies: micro's error convention over NATS, HTTP's on the dashboard's
// endpoints.
const (
	CodeBadRequest  = 400
	CodeNotFound    = 404
	CodeConflict    = 409
	CodeUnavailable = 503
)

// ErrorBody is the JSON body of an error reply.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// StatusOf maps an error to the micro status code of its category (service.CategoryOf; a NATS
// timeout is communication).
func StatusOf(err error) (int, domain.Category) {
	cat := service.CategoryOf(err)
	if cat == domain.CategoryGeneric && errors.Is(err, nats.ErrTimeout) {
		cat = domain.CategoryCommunication
	}
	switch cat {
	case domain.CategoryNotFound:
		return CodeNotFound, cat
	case domain.CategoryAlreadyExists, domain.CategoryConflict:
		return CodeConflict, cat
	case domain.CategorySchema, domain.CategoryConfiguration, domain.CategorySecurity:
		return CodeBadRequest, cat
	}
	return CodeUnavailable, cat
}
