package apprelease.consumer;

import com.alibaba.nacos.api.NacosFactory;
import com.alibaba.nacos.api.PropertyKeyConst;
import com.alibaba.nacos.api.config.ConfigService;
import com.alibaba.nacos.api.config.listener.AbstractListener;
import com.alibaba.nacos.api.config.listener.Listener;

import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

/**
 * Simulated pods reading their Nacos config as a Spring Cloud Alibaba app does: one
 * ConfigService per pod, getConfig for each dataId at "startup", then a listener on each.
 * Pods come and go through a line protocol on stdin:
 *
 * <pre>
 *   add POD IP GROUP DATAID[,DATAID...]   start a pod: read each dataId of GROUP, then listen
 *   remove POD                            stop its listeners and its ConfigService
 *   quit
 * </pre>
 *
 * One JSON line per event on stdout, flushed at once ("at" is epoch milliseconds; "md5" is the
 * hex md5 of the UTF-8 content, as Nacos reports it, null when the dataId does not exist):
 *
 * <pre>
 *   {"at":..,"event":"started"}
 *   {"at":..,"event":"read","pod":..,"ip":..,"group":..,"dataId":..,"md5":..}     (startup read)
 *   {"at":..,"event":"change","pod":..,"ip":..,"group":..,"dataId":..,"md5":..}   (listener)
 *   {"at":..,"event":"added","pod":..}      (every dataId read and listened to)
 *   {"at":..,"event":"removed","pod":..}
 *   {"at":..,"event":"error","pod":..,"message":..}
 * </pre>
 *
 * The client's IP is JVM-wide in nacos-client (NetUtils caches the system property
 * com.alibaba.nacos.client.local.ip), so a pod with its own IP is a JVM of its own; the
 * driver (tests/plugins/nacos_config_readers.py) does that by default. Options:
 * --server-addr A[,B] [--namespace NS] [--timeout-ms N]. Credentials only from the
 * environment (NACOS_USERNAME, NACOS_PASSWORD), never printed.
 */
public final class ConfigReaders {
    private final Properties base;
    private final long timeoutMs;
    private final PrintWriter out;
    private final Map<String, Pod> pods = new LinkedHashMap<>();

    private ConfigReaders(Properties base, long timeoutMs, PrintWriter out) {
        this.base = base;
        this.timeoutMs = timeoutMs;
        this.out = out;
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> options = NacosConsumer.parse(args);
        Properties properties = new Properties();
        properties.setProperty(PropertyKeyConst.SERVER_ADDR, NacosConsumer.required(options, "server-addr"));
        String namespace = options.getOrDefault("namespace", "");
        if (!namespace.isEmpty() && !namespace.equals("public")) {
            properties.setProperty(PropertyKeyConst.NAMESPACE, namespace);
        }
        String username = System.getenv("NACOS_USERNAME");
        if (username != null && !username.isEmpty()) {
            properties.setProperty(PropertyKeyConst.USERNAME, username);
            properties.setProperty(PropertyKeyConst.PASSWORD, System.getenv().getOrDefault("NACOS_PASSWORD", ""));
        }
        PrintWriter out = new PrintWriter(new BufferedWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8)));
        ConfigReaders readers = new ConfigReaders(properties, Long.parseLong(options.getOrDefault("timeout-ms", "5000")), out);
        readers.emit("started", new LinkedHashMap<>());
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            String[] words = line.trim().split("\\s+");
            if (words[0].equals("quit")) {
                break;
            } else if (words[0].equals("add") && words.length == 5) {
                readers.add(words[1], words[2], words[3], Arrays.asList(words[4].split(",")));
            } else if (words[0].equals("remove") && words.length == 2) {
                readers.remove(words[1]);
            } else if (!words[0].isEmpty()) {
                readers.emit("error", fields("pod", null, "message", "unknown command: " + line));
            }
        }
        for (String pod : new ArrayList<>(readers.pods.keySet())) {
            readers.remove(pod);
        }
        System.exit(0); // the clients' non-daemon threads would keep the JVM alive
    }

    private void add(String name, String ip, String group, List<String> dataIds) {
        if (pods.containsKey(name)) {
            emit("error", fields("pod", name, "message", "pod already added"));
            return;
        }
        try {
            ConfigService config = NacosFactory.createConfigService(base);
            Pod pod = new Pod(name, ip, group, config);
            pods.put(name, pod);
            for (String dataId : dataIds) {
                String content = config.getConfig(dataId, group, timeoutMs);
                emit("read", pod.event(dataId, content));
                Listener listener = new AbstractListener() {
                    @Override
                    public void receiveConfigInfo(String changed) {
                        emit("change", pod.event(dataId, changed));
                    }
                };
                config.addListener(dataId, group, listener);
                pod.listeners.put(dataId, listener);
            }
            emit("added", fields("pod", name));
        } catch (Exception error) {
            emit("error", fields("pod", name, "message", error.getClass().getSimpleName() + ": " + error.getMessage()));
        }
    }

    private void remove(String name) {
        Pod pod = pods.remove(name);
        if (pod == null) {
            emit("error", fields("pod", name, "message", "no such pod"));
            return;
        }
        try {
            for (Map.Entry<String, Listener> entry : pod.listeners.entrySet()) {
                pod.config.removeListener(entry.getKey(), pod.group, entry.getValue());
            }
            pod.config.shutDown();
        } catch (Exception error) {
            emit("error", fields("pod", name, "message", error.getClass().getSimpleName() + ": " + error.getMessage()));
        }
        emit("removed", fields("pod", name));
    }

    private void emit(String event, Map<String, Object> values) {
        StringBuilder line = new StringBuilder("{\"at\":").append(System.currentTimeMillis());
        line.append(",\"event\":").append(quote(event));
        for (Map.Entry<String, Object> entry : values.entrySet()) {
            line.append(',').append(quote(entry.getKey())).append(':').append(quote(entry.getValue()));
        }
        synchronized (out) {
            out.print(line.append("}\n"));
            out.flush();
        }
    }

    private static Map<String, Object> fields(Object... keysAndValues) {
        Map<String, Object> values = new LinkedHashMap<>();
        for (int i = 0; i + 1 < keysAndValues.length; i += 2) {
            values.put((String) keysAndValues[i], keysAndValues[i + 1]);
        }
        return values;
    }

    private static String quote(Object value) {
        if (value == null) {
            return "null";
        }
        StringBuilder quoted = new StringBuilder("\"");
        for (char ch : value.toString().toCharArray()) {
            if (ch == '"' || ch == '\\') {
                quoted.append('\\').append(ch);
            } else if (ch < 0x20) {
                quoted.append(String.format("\\u%04x", (int) ch));
            } else {
                quoted.append(ch);
            }
        }
        return quoted.append('"').toString();
    }

    static String md5(String content) {
        if (content == null) {
            return null;
        }
        try {
            StringBuilder hex = new StringBuilder();
            for (byte b : MessageDigest.getInstance("MD5").digest(content.getBytes(StandardCharsets.UTF_8))) {
                hex.append(String.format("%02x", b));
            }
            return hex.toString();
        } catch (java.security.NoSuchAlgorithmException impossible) {
            throw new IllegalStateException(impossible);
        }
    }

    private static final class Pod {
        final String name;
        final String ip;
        final String group;
        final ConfigService config;
        final Map<String, Listener> listeners = new LinkedHashMap<>();

        Pod(String name, String ip, String group, ConfigService config) {
            this.name = name;
            this.ip = ip;
            this.group = group;
            this.config = config;
        }

        Map<String, Object> event(String dataId, String content) {
            return fields("pod", name, "ip", ip, "group", group, "dataId", dataId, "md5", md5(content));
        }
    }
}
