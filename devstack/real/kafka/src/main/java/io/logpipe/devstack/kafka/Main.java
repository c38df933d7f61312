package io.logpipe.devstack.kafka;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Runs an Apache Kafka node (broker and KRaft controller) for logpipe's
 * devstack in one JVM: it formats the storage named in the properties file
 * unless it already is, then runs the broker as kafka.Kafka does.
 *
 * <p>Usage: {@code Main SERVER_PROPERTIES CLUSTER_ID [SCRAM_FILE]}. SCRAM_FILE
 * holds a SCRAM user to create when formatting, as kafka-storage's
 * {@code --add-scram} takes it ({@code SCRAM-SHA-512=[name=...,password=...]}).
 * The broker stops on SIGTERM and when standard input ends, which is how it
 * notices that devstack has gone.
 */
public final class Main {
    public static void main(String[] args) throws Exception {
        if (args.length != 2 && args.length != 3) {
            System.err.println("usage: Main SERVER_PROPERTIES CLUSTER_ID [SCRAM_FILE]");
            System.exit(2);
        }
        exitWhenInputEnds();
        List<String> format = new ArrayList<>(List.of(
            "format", "--config", args[0], "--cluster-id", args[1], "--ignore-formatted"));
        if (args.length == 3) {
            format.add("--add-scram");
            format.add(Files.readString(Path.of(args[2])).trim());
        }
        int rc = kafka.tools.StorageTool.execute(format.toArray(new String[0]), System.out);
        if (rc != 0) {
            System.exit(rc);
        }
        kafka.Kafka.main(new String[] {args[0]});
    }

    /** Exits (running Kafka's shutdown hook) when standard input reaches its end. */
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
