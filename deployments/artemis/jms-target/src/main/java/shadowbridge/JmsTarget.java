package shadowbridge;

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
 * would be. It receives N requests from the requests queue, prints each one as a JSON line (its
 * JMS type, text and string properties), and answers each with a TextMessage on the
 * confirmations queue whose JMSCorrelationID is the operation id; an add is answered with a uid.
 *
 * It keeps the accounts it created (uid and attributes) and answers a list request (a
 * reconciliation) with pages of two accounts on the confirmations queue, each a TextMessage
 * naming the run (reconciliationId, page, last) whose JMSCorrelationID is the run's id. With the
 * optional argument "drift", an administrator has been at work on the target before the list: the
 * second account has a fullName it was not given, the third is gone, and an account nobody asked
 * for (uid jms-outside, login jms-outside) is there.
 *
 * usage: JmsTarget BROKER_URL USER PASSWORD REQUESTS CONFIRMATIONS N [drift]
 */
public final class JmsTarget {
    public static void main(String[] args) throws Exception {
        if (args.length != 6 && !(args.length == 7 && args[6].equals("drift"))) {
            System.err.println("usage: JmsTarget BROKER_URL USER PASSWORD REQUESTS CONFIRMATIONS N [drift]");
            System.exit(2);
        }
        int n = Integer.parseInt(args[5]);
        boolean drift = args.length == 7;
        java.util.List<String[]> accounts = new java.util.ArrayList<>(); // {uid, attributes JSON}
        try (ActiveMQConnectionFactory cf = new ActiveMQConnectionFactory(args[0]);
             Connection conn = cf.createConnection(args[1], args[2])) {
            Session session = conn.createSession(false, Session.CLIENT_ACKNOWLEDGE);
            MessageConsumer consumer = session.createConsumer(session.createQueue(args[3]));
            MessageProducer producer = session.createProducer(session.createQueue(args[4]));
            conn.start();
            for (int i = 0; i < n; i++) {
                Message m = consumer.receive(60_000);
                if (m == null) {
                    System.err.println("no request within 60 s after " + i);
                    System.exit(3);
                }
                if (!(m instanceof TextMessage)) {
                    System.err.println("not a TextMessage: " + m.getClass().getName());
                    System.exit(4);
                }
                String text = ((TextMessage) m).getText();
                String operationId = m.getStringProperty("operationId");
                String shadowId = m.getStringProperty("shadowId");
                System.out.println("{\"type\":\"TextMessage\",\"text\":" + q(text)
                        + ",\"shadowId\":" + q(shadowId)
                        + ",\"operationId\":" + q(operationId)
                        + ",\"resource\":" + q(m.getStringProperty("resource"))
                        + ",\"attempt\":" + q(m.getStringProperty("attempt"))
                        + ",\"sequence\":" + (m.propertyExists("sequence") ? m.getLongProperty("sequence") : 0)
                        + ",\"duplicateId\":" + q(m.getStringProperty("_AMQ_DUPL_ID"))
                        + ",\"jmsMessageId\":" + q(m.getJMSMessageID())
                        + ",\"persistent\":" + (m.getJMSDeliveryMode() == javax.jms.DeliveryMode.PERSISTENT)
                        + ",\"replyTo\":" + q(String.valueOf(m.getJMSReplyTo())) + "}");
                System.out.flush();
                if (text.contains("\"operation\":\"list\"")) {
                    list(session, producer, operationId, drift ? drifted(accounts) : accounts);
                    m.acknowledge();
                    continue;
                }
                boolean add = text.contains("\"operation\":\"add\"");
                String uid = "jms-" + shadowId.substring(0, 8);
                if (add) {
                    accounts.add(new String[] {uid, object(text, "\"attributes\":")});
                }
                String answer = add
                        ? "{\"resultStatus\":\"success\",\"message\":\"created by JMS\",\"primaryIdentifiers\":{\"uid\":[\"" + uid + "\"]}}"
                        : "{\"resultStatus\":\"success\",\"message\":\"done by JMS\"}";
                TextMessage reply = session.createTextMessage(answer);
                reply.setJMSCorrelationID(operationId);
                producer.send(reply);
                m.acknowledge();
            }
        }
    }

    /** list answers reconciliation run with the accounts, two to a page, the last page marked. */
    private static void list(Session session, MessageProducer producer, String run, java.util.List<String[]> accounts)
            throws JMSException {
        int pages = Math.max(1, (accounts.size() + 1) / 2);
        for (int p = 0; p < pages; p++) {
            StringBuilder b = new StringBuilder("{\"reconciliationId\":").append(q(run))
                    .append(",\"page\":").append(p + 1).append(",\"last\":").append(p == pages - 1).append(",\"accounts\":[");
            for (int i = 2 * p; i < Math.min(2 * p + 2, accounts.size()); i++) {
                String[] a = accounts.get(i);
                if (i > 2 * p) {
                    b.append(',');
                }
                b.append("{\"primaryIdentifiers\":{\"uid\":[").append(q(a[0])).append("]},\"attributes\":").append(a[1]).append('}');
            }
            TextMessage page = session.createTextMessage(b.append("]}").toString());
            page.setJMSCorrelationID(run);
            producer.send(page);
        }
    }

    /** drifted is the accounts after an administrator's edits on the target (see the class comment). */
    private static java.util.List<String[]> drifted(java.util.List<String[]> accounts) {
        java.util.List<String[]> out = new java.util.ArrayList<>();
        for (int i = 0; i < accounts.size(); i++) {
            String[] a = accounts.get(i);
            if (i == 1) {
                out.add(new String[] {a[0], "{\"fullName\":[\"Edited In JMS\"]," + a[1].substring(1)});
            } else if (i != 2) {
                out.add(a);
            }
        }
        out.add(new String[] {"jms-outside", "{\"login\":[\"jms-outside\"]}"});
        return out;
    }

    /** object returns the JSON object that follows key in text (braces balanced, strings skipped). */
    private static String object(String text, String key) {
        int start = text.indexOf(key);
        if (start < 0) {
            return "{}";
        }
        start = text.indexOf('{', start + key.length());
        int depth = 0;
        boolean str = false;
        for (int i = start; i < text.length(); i++) {
            char c = text.charAt(i);
            if (str) {
                if (c == '\\') {
                    i++;
                } else if (c == '"') {
                    str = false;
                }
            } else if (c == '"') {
                str = true;
            } else if (c == '{') {
                depth++;
            } else if (c == '}' && --depth == 0) {
                return text.substring(start, i + 1);
            }
        }
        return "{}";
    }

    /** q quotes a string for JSON. */
    private static String q(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.append('"').toString();
    }

    private JmsTarget() {}
}
