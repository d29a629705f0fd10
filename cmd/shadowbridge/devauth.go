package main

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/nats-io/nats-server/v2/server"
)

// devServiceUser is the embedded server's user for the service itself.
const devServiceUser = "shadowbridge"

// devUsers are the users of `dev`'s embedded NATS, after the production roles
// (deployments/nats/accounts.conf): the service's own, with a password made for this run and
// never shown, and the one every client without credentials is taken for. That one sends
// commands and queries, reads everything (audit, verify, history, watching the projection) and
// may rewrite the projection (rebuild: it is derived from the log), but cannot write the log,
// the index or the timers, change or purge their streams, or take, acknowledge or delete the
// service's consumers: a local client cannot corrupt what the service decided.
func devUsers(prefix string) (users []*server.User, servicePassword string) {
	servicePassword = randomSecret()
	deny := []string{prefix + ".evt.>", prefix + ".res.>", prefix + ".timer.>", prefix + ".due.>", "$KV.PROV_INDEX.>", "$KV.PROV_RECON.>"}
	for _, stream := range []string{"PROV_EVENTS", "KV_PROV_INDEX"} {
		for _, api := range []string{"CREATE", "UPDATE", "DELETE", "PURGE", "MSG.DELETE", "RESTORE"} {
			deny = append(deny, "$JS.API.STREAM."+api+"."+stream)
		}
	}
	for _, durable := range []string{"PROV_DISPATCHER", "PROV_PROJECTOR", "PROV_TIMER_ARMER", "PROV_TIMERS"} {
		c := "PROV_EVENTS." + durable
		deny = append(deny, "$JS.API.CONSUMER.DELETE."+c, "$JS.API.CONSUMER.CREATE."+c, "$JS.API.CONSUMER.CREATE."+c+".>",
			"$JS.API.CONSUMER.DURABLE.CREATE."+c, "$JS.API.CONSUMER.MSG.NEXT."+c, "$JS.ACK."+c+".>")
	}
	return []*server.User{
		{Username: devServiceUser, Password: servicePassword},
		{Username: "client", Permissions: &server.Permissions{Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: deny}}},
	}, servicePassword
}

// randomSecret is 32 random bytes, hex.
func randomSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on the platforms Go supports
	}
	return hex.EncodeToString(b)
}
