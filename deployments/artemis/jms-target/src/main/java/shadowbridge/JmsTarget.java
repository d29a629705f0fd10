package shadowbridge;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import javax.jms.Connection;
import javax.jms.JMSException;
import javax.jms.Message;
import javax.jms.MessageConsumer;
import javax.jms.MessageProducer;
import javax.jms.Session;
import javax.jms.TextMessage;
import org.apache.activemq.artemis.jms.client.ActiveMQConnectionFactory;

/**
 * A target system written with Apache Artemis' own JMS client, as midPoint's side of the broker
 * would be. It receives requests from the requests queue, prints each one as a JSON line (its
 * JMS type, text and string properties), does what it asks to the accounts it holds (add, modify,
 * delete), and answers with a TextMessage on the confirmations queue whose JMSCorrelationID is
 * the operation id; an add is answered with the uid it assigned (jms- and the shadow id's first
 * eight characters).
 *
 * A list request (a reconciliation) is answered from the accounts it holds, two to a page, each
 * page a TextMessage naming the run (reconciliationId, page, last) whose JMSCorrelationID is the
 * run's id. With the optional argument "drift", an administrator has been at work on the target
 * before the first list: the second account by login has a fullName it was not given, the third
 * by login is gone, and an account nobody asked for (uid jms-outside, login jms-outside) is there
 * (by login: the order the adds arrive in is the dispatcher's, not the order they were made).
 *
 * It stops after N requests, or with N = 0 once no request came for 5 seconds, and prints the
 * accounts it holds as a last line: {"type":"accounts","accounts":{uid:{attributes}}}. With
 * N < 0 it serves until it is killed (the production example's target system). The broker URL
 * may carry TLS settings (tcp://host:port?sslEnabled=true;trustStorePath=...).
 *
 * usage: JmsTarget BROKER_URL USER PASSWORD REQUESTS CONFIRMATIONS N [drift]
 */
public final class JmsTarget {
    private final Map<String, Map<String, Object>> accounts = new LinkedHashMap<>();
    private boolean drift;

    public static void main(String[] args) throws Exception {
        if (args.length != 6 && !(args.length == 7 && args[6].equals("drift"))) {
            System.err.println("usage: JmsTarget BROKER_URL USER PASSWORD REQUESTS CONFIRMATIONS N [drift]");
            System.exit(2);
        }
        int n = Integer.parseInt(args[5]);
        JmsTarget t = new JmsTarget();
        t.drift = args.length == 7;
        try (ActiveMQConnectionFactory cf = new ActiveMQConnectionFactory(args[0]);
             Connection conn = cf.createConnection(args[1], args[2])) {
            Session session = conn.createSession(false, Session.CLIENT_ACKNOWLEDGE);
            MessageConsumer consumer = session.createConsumer(session.createQueue(args[3]));
            MessageProducer producer = session.createProducer(session.createQueue(args[4]));
            conn.start();
            for (int i = 0; n <= 0 || i < n; i++) {
                Message m = consumer.receive(n == 0 ? 5_000 : 60_000);
                if (m == null && n < 0) {
                    continue;
                }
                if (m == null && n == 0) {
                    break;
                }
                if (m == null) {
                    System.err.println("no request within 60 s after " + i);
                    System.exit(3);
                }
                if (!(m instanceof TextMessage)) {
                    System.err.println("not a TextMessage: " + m.getClass().getName());
                    System.exit(4);
                }
                t.handle(session, producer, (TextMessage) m);
                m.acknowledge();
            }
        }
        Map<String, Object> last = new LinkedHashMap<>();
        last.put("type", "accounts");
        last.put("accounts", t.accounts);
        System.out.println(Json.str(last));
    }

    /** handle prints a request, does what it asks and answers it. */
    @SuppressWarnings("unchecked")
    private void handle(Session session, MessageProducer producer, TextMessage m) throws JMSException {
        String text = m.getText();
        String operationId = m.getStringProperty("operationId");
        String shadowId = m.getStringProperty("shadowId");
        Map<String, Object> line = new LinkedHashMap<>();
        line.put("type", "TextMessage");
        line.put("text", text);
        line.put("shadowId", shadowId);
        line.put("operationId", operationId);
        line.put("resource", m.getStringProperty("resource"));
        line.put("attempt", m.getStringProperty("attempt"));
        line.put("sequence", m.propertyExists("sequence") ? m.getLongProperty("sequence") : 0L);
        line.put("duplicateId", m.getStringProperty("_AMQ_DUPL_ID"));
        line.put("jmsMessageId", m.getJMSMessageID());
        line.put("persistent", m.getJMSDeliveryMode() == javax.jms.DeliveryMode.PERSISTENT);
        line.put("replyTo", String.valueOf(m.getJMSReplyTo()));
        System.out.println(Json.str(line));
        System.out.flush();

        Map<String, Object> req = (Map<String, Object>) Json.parse(text);
        String op = (String) req.get("operation");
        Map<String, Object> answer = new LinkedHashMap<>();
        answer.put("resultStatus", "success");
        switch (op) {
            case "list" -> {
                if (drift) {
                    drift();
                    drift = false;
                }
                list(session, producer, operationId);
                return;
            }
            case "add" -> {
                String uid = "jms-" + shadowId.substring(0, 8);
                accounts.put(uid, new LinkedHashMap<>((Map<String, Object>) req.get("attributes")));
                answer.put("message", "created by JMS");
                answer.put("primaryIdentifiers", Map.of("uid", List.of(uid)));
            }
            case "modify" -> {
                Map<String, Object> acct = accounts.get(uid(req));
                Map<String, Object> changes = (Map<String, Object>) req.get("changes");
                if (acct != null && changes != null) {
                    for (Map.Entry<String, Object> c : changes.entrySet()) {
                        apply(acct, c.getKey(), (Map<String, Object>) c.getValue());
                    }
                }
                answer.put("message", "done by JMS");
            }
            case "delete" -> {
                accounts.remove(uid(req));
                answer.put("message", "done by JMS");
            }
            default -> answer.put("message", "done by JMS");
        }
        TextMessage reply = session.createTextMessage(Json.str(answer));
        reply.setJMSCorrelationID(operationId);
        producer.send(reply);
    }

    @SuppressWarnings("unchecked")
    private static String uid(Map<String, Object> req) {
        Map<String, Object> ids = (Map<String, Object>) req.get("primaryIdentifiers");
        if (ids == null || !(ids.get("uid") instanceof List<?> l) || l.isEmpty()) {
            return "";
        }
        return String.valueOf(l.get(0));
    }

    /** apply makes one attribute's change (replace, add, delete values) to an account. */
    @SuppressWarnings("unchecked")
    private static void apply(Map<String, Object> acct, String attr, Map<String, Object> change) {
        List<Object> vals = new ArrayList<>(acct.get(attr) instanceof List<?> l ? (List<Object>) l : List.of());
        if (change.get("replace") instanceof List<?> r) {
            vals = new ArrayList<>((List<Object>) r);
        }
        if (change.get("add") instanceof List<?> a) {
            for (Object v : a) {
                if (!vals.contains(v)) {
                    vals.add(v);
                }
            }
        }
        if (change.get("delete") instanceof List<?> d) {
            vals.removeAll(d);
        }
        if (vals.isEmpty()) {
            acct.remove(attr);
        } else {
            acct.put(attr, vals);
        }
    }

    /** drift is an administrator's work on the target (see the class comment). */
    private void drift() {
        List<String> uids = new ArrayList<>(accounts.keySet());
        uids.sort(java.util.Comparator.comparing(u -> String.valueOf(accounts.get(u).get("login"))));
        if (uids.size() > 1) {
            Map<String, Object> edited = new LinkedHashMap<>();
            edited.put("fullName", List.of("Edited In JMS"));
            edited.putAll(accounts.get(uids.get(1)));
            accounts.put(uids.get(1), edited);
        }
        if (uids.size() > 2) {
            accounts.remove(uids.get(2));
        }
        accounts.put("jms-outside", new LinkedHashMap<>(Map.of("login", List.of("jms-outside"))));
    }

    /** list answers reconciliation run with the accounts, two to a page, the last page marked. */
    private void list(Session session, MessageProducer producer, String run) throws JMSException {
        List<Object> all = new ArrayList<>();
        for (Map.Entry<String, Map<String, Object>> a : accounts.entrySet()) {
            Map<String, Object> acct = new LinkedHashMap<>();
            acct.put("primaryIdentifiers", Map.of("uid", List.of(a.getKey())));
            acct.put("attributes", a.getValue());
            all.add(acct);
        }
        int pages = Math.max(1, (all.size() + 1) / 2);
        for (int p = 0; p < pages; p++) {
            Map<String, Object> page = new LinkedHashMap<>();
            page.put("reconciliationId", run);
            page.put("page", p + 1);
            page.put("last", p == pages - 1);
            page.put("accounts", all.subList(Math.min(2 * p, all.size()), Math.min(2 * p + 2, all.size())));
            TextMessage msg = session.createTextMessage(Json.str(page));
            msg.setJMSCorrelationID(run);
            producer.send(msg);
        }
    }

    private JmsTarget() {}
}
