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
 * usage: JmsTarget BROKER_URL USER PASSWORD REQUESTS CONFIRMATIONS N
 */
public final class JmsTarget {
    public static void main(String[] args) throws Exception {
        if (args.length != 6) {
            System.err.println("usage: JmsTarget BROKER_URL USER PASSWORD REQUESTS CONFIRMATIONS N");
            System.exit(2);
        }
        int n = Integer.parseInt(args[5]);
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
                        + ",\"sequence\":" + m.getLongProperty("sequence")
                        + ",\"duplicateId\":" + q(m.getStringProperty("_AMQ_DUPL_ID"))
                        + ",\"jmsMessageId\":" + q(m.getJMSMessageID())
                        + ",\"persistent\":" + (m.getJMSDeliveryMode() == javax.jms.DeliveryMode.PERSISTENT)
                        + ",\"replyTo\":" + q(String.valueOf(m.getJMSReplyTo())) + "}");
                System.out.flush();
                String answer = text.contains("\"operation\":\"add\"")
                        ? "{\"resultStatus\":\"success\",\"message\":\"created by JMS\",\"primaryIdentifiers\":{\"uid\":[\"jms-" + shadowId.substring(0, 8) + "\"]}}"
                        : "{\"resultStatus\":\"success\",\"message\":\"done by JMS\"}";
                TextMessage reply = session.createTextMessage(answer);
                reply.setJMSCorrelationID(operationId);
                producer.send(reply);
                m.acknowledge();
            }
        }
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
