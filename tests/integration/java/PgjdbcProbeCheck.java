import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.postgresql.PGConnection;
import org.postgresql.PGProperty;
import org.postgresql.replication.PGReplicationStream;

/**
 * What Debezium does with the PostgreSQL driver, checked against the running server: a plain query, then a
 * logical replication stream read with readPending() (empty reads, then one change). Prints
 * "query=<n> empty_reads=<n> empty_ms=<wall ms for them> change=<payload>".
 * Args: jdbc-url user password slot-name.
 */
public class PgjdbcProbeCheck {
    public static void main(String[] args) throws Exception {
        String url = args[0];
        String slot = args[3];
        Properties replication = new Properties();
        PGProperty.USER.set(replication, args[1]);
        PGProperty.PASSWORD.set(replication, args[2]);
        PGProperty.ASSUME_MIN_SERVER_VERSION.set(replication, "15");
        PGProperty.REPLICATION.set(replication, "database");
        PGProperty.PREFER_QUERY_MODE.set(replication, "simple");
        int query;
        try (Connection plain = DriverManager.getConnection(url, args[1], args[2]);
                Statement st = plain.createStatement();
                ResultSet rs = st.executeQuery("SELECT 41 + 1")) {
            rs.next();
            query = rs.getInt(1);
        }
        try (Connection conn = DriverManager.getConnection(url, replication)) {
            PGConnection pg = conn.unwrap(PGConnection.class);
            pg.getReplicationAPI().createReplicationSlot().logical().withSlotName(slot)
                    .withOutputPlugin("test_decoding").withTemporaryOption().make();
            PGReplicationStream stream = pg.getReplicationAPI().replicationStream().logical().withSlotName(slot)
                    .withStatusInterval(10, TimeUnit.SECONDS).start();
            // The slot decodes every transaction of the database, so a read may find someone else's change:
            // only the reads that came back empty are timed.
            int empty = 0;
            long emptyNanos = 0;
            for (int i = 0; i < 10_000 && empty < 200; i++) {
                long start = System.nanoTime();
                ByteBuffer data = stream.readPending();
                if (data == null) {
                    empty++;
                    emptyNanos += System.nanoTime() - start;
                }
            }
            long emptyMs = emptyNanos / 1_000_000;
            try (Connection writer = DriverManager.getConnection(url, args[1], args[2]);
                    Statement st = writer.createStatement()) {
                st.execute("SELECT pg_logical_emit_message(true, 'pgjdbc-probe-check', 'hello')");
            }
            String change = "none";
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (System.nanoTime() < deadline) {
                ByteBuffer data = stream.readPending();
                if (data == null) {
                    Thread.sleep(1);
                    continue;
                }
                String text = StandardCharsets.UTF_8.decode(data).toString();
                if (text.contains("pgjdbc-probe-check")) {
                    change = text.replace(' ', '_');
                    break;
                }
            }
            stream.close();
            System.out.println("query=" + query + " empty_reads=" + empty + " empty_ms=" + emptyMs + " change=" + change);
        }
    }
}
