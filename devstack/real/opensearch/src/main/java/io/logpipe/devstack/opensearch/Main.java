package io.logpipe.devstack.opensearch;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.http.HttpServerTransport;
import org.opensearch.index.mapper.MapperExtrasPlugin;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.painless.PainlessPlugin;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

/**
 * Runs a single OpenSearch node inside this JVM for logpipe's devstack, with
 * its modules loaded from the class path instead of a distribution's folders.
 *
 * <p>Usage: {@code Main HOME HTTP_PORTS TRANSPORT_PORTS}, where the ports are
 * a port ("9200") or a range ("20000-32000") that OpenSearch binds the first
 * free port of. HOME/config/log4j2.properties configures the node's log. Once the node is started it prints one line,
 * {@code devstack-opensearch http HOST:PORT}, with the bound HTTP address.
 * It stops the node on SIGTERM and when its standard input ends, which is
 * how it notices that devstack has gone.
 */
public final class Main {
    /** The line prefix that tells devstack the HTTP address. */
    static final String READY = "devstack-opensearch http ";

    /** The node's plugins, found on the class path. */
    static final List<Class<? extends Plugin>> PLUGINS = List.of(
        Netty4Plugin.class, CommonAnalysisPlugin.class, MapperExtrasPlugin.class, PainlessPlugin.class);

    /** Node's constructor that takes class path plugins is protected. */
    static final class EmbeddedNode extends Node {
        EmbeddedNode(Environment env) {
            super(env, PLUGINS, true);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: Main HOME HTTP_PORTS TRANSPORT_PORTS");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        Settings settings = Settings.builder()
            .put("cluster.name", "logpipe-devstack")
            .put("node.name", "devstack")
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("discovery.type", "single-node")
            .put("network.host", "127.0.0.1")
            .put("http.port", args[1])
            .put("transport.port", args[2])
            .put("http.type", "netty4")
            .put("transport.type", "netty4")
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("action.auto_create_index", true)
            .put("bootstrap.memory_lock", false)
            .build();

        // OpenSearch's log configuration sends System.out into a logger:
        // the line for devstack goes to the real standard output.
        PrintStream stdout = System.out;
        LogConfigurator.registerErrorListener();
        Environment env = InternalSettingsPreparer.prepareEnvironment(
            settings, Collections.emptyMap(), home.resolve("config"), () -> "devstack");
        LogConfigurator.setNodeName("devstack");
        LogConfigurator.configure(env);
        Node node = new EmbeddedNode(env);

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(20, TimeUnit.SECONDS);
            } catch (IOException | InterruptedException e) {
                System.err.println("devstack-opensearch: stopping the node: " + e);
            }
            stopped.countDown();
        }, "devstack-stop"));
        exitWhenInputEnds();

        node.start();
        HttpServerTransport http = node.injector().getInstance(HttpServerTransport.class);
        stdout.println(READY + http.boundAddress().publishAddress());
        stdout.flush();
        stopped.await(); // the node's threads keep the JVM alive; this keeps main for the hook
    }

    /** Exits (running the shutdown hook) when standard input reaches its end. */
    static void exitWhenInputEnds() {
        Thread t = new Thread(() -> {
            InputStream in = System.in;
            byte[] buf = new byte[64];
            try {
                while (in.read(buf) >= 0) {
                    // devstack writes nothing; only the end matters.
                }
            } catch (IOException e) {
                // a broken pipe is an end too
            }
            System.exit(0);
        }, "devstack-parent-watch");
        t.setDaemon(true);
        t.start();
    }
}
