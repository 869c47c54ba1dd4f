package io.commerceoutbox.pgjdbc;

import java.io.FilterInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.Socket;
import java.net.SocketException;
import java.net.SocketTimeoutException;
import javax.net.SocketFactory;

/**
 * Plain TCP sockets for the PostgreSQL JDBC driver (pgjdbc) that answer its non-blocking "is a message
 * pending?" probe without waiting.
 *
 * <p>Debezium reads the replication stream with {@code readPending()}, five times per poll before it sleeps
 * {@code poll.interval.ms}. On a replication connection pgjdbc 42.7.x checks the socket with a blocking
 * one-byte read under a 1 ms socket timeout ({@code PGStream.hasMessagePending}, after
 * {@code setMinStreamAvailableCheckDelay(0)}; no setting changes it, 42.7.14 included), and an empty read
 * ends in a {@code SocketTimeoutException} with a 32-frame stack trace: ~34 us of CPU per empty read
 * (~9 of them the stack trace), several hundred times a second across the worker's connectors.
 *
 * <p>The driver calls {@code available()} just before the probe, so when the probe's read finds the
 * kernel's receive buffer still empty it is answered at once with a {@link NothingPending} (a
 * {@code SocketTimeoutException}, which the driver already treats as "nothing pending", without a stack
 * trace). Any other read, and a probe that finds bytes, goes to the socket unchanged; a 1 ms timeout is
 * only ever the probe's (the driver's own timeouts are in seconds, a status interval in Debezium's ms).
 */
public final class ProbeSocketFactory extends SocketFactory {
    /** The socket timeout pgjdbc sets for its pending-message probe, and nothing else does. */
    static final int PROBE_TIMEOUT_MILLIS = 1;

    @Override
    public Socket createSocket() {
        return new ProbeSocket();
    }

    @Override
    public Socket createSocket(String host, int port) throws IOException {
        Socket socket = new ProbeSocket();
        socket.connect(new java.net.InetSocketAddress(host, port));
        return socket;
    }

    @Override
    public Socket createSocket(String host, int port, InetAddress localHost, int localPort) throws IOException {
        Socket socket = new ProbeSocket();
        socket.bind(new java.net.InetSocketAddress(localHost, localPort));
        socket.connect(new java.net.InetSocketAddress(host, port));
        return socket;
    }

    @Override
    public Socket createSocket(InetAddress host, int port) throws IOException {
        Socket socket = new ProbeSocket();
        socket.connect(new java.net.InetSocketAddress(host, port));
        return socket;
    }

    @Override
    public Socket createSocket(InetAddress host, int port, InetAddress localHost, int localPort) throws IOException {
        Socket socket = new ProbeSocket();
        socket.bind(new java.net.InetSocketAddress(localHost, localPort));
        socket.connect(new java.net.InetSocketAddress(host, port));
        return socket;
    }

    /** "Nothing pending" from the probe: the driver catches it where it catches the real timeout. */
    static final class NothingPending extends SocketTimeoutException {
        private static final long serialVersionUID = 1L;

        NothingPending() {
            super("Read timed out (no bytes pending)");
        }

        @Override
        public synchronized Throwable fillInStackTrace() {
            return this;
        }
    }

    static final class ProbeSocket extends Socket {
        // Socket.getSoTimeout takes the implementation's lock; the reading thread checks this copy instead.
        private volatile int timeoutMillis;

        @Override
        public synchronized void setSoTimeout(int timeout) throws SocketException {
            super.setSoTimeout(timeout);
            timeoutMillis = timeout;
        }

        @Override
        public InputStream getInputStream() throws IOException {
            return new ProbeInputStream(super.getInputStream(), this);
        }

        boolean probing() {
            return timeoutMillis == PROBE_TIMEOUT_MILLIS;
        }
    }

    static final class ProbeInputStream extends FilterInputStream {
        private final ProbeSocket socket;

        ProbeInputStream(InputStream in, ProbeSocket socket) {
            super(in);
            this.socket = socket;
        }

        private void answerEmptyProbe() throws IOException {
            if (socket.probing() && in.available() == 0) {
                throw new NothingPending();
            }
        }

        @Override
        public int read() throws IOException {
            answerEmptyProbe();
            return in.read();
        }

        @Override
        public int read(byte[] buffer, int offset, int length) throws IOException {
            answerEmptyProbe();
            return in.read(buffer, offset, length);
        }
    }
}
