import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Optional;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.common.Node;

/**
 * Readiness probe used by kafka.sh (compiled once):
 *
 *   java -cp 'probe:libs/*' KafkaReady <bootstrap> <timeoutMs> <expectedNodes> [pidToWatch...]
 *
 * Polls DescribeCluster (a real request answered from the broker's metadata, not just an open
 * port) until the cluster reports at least `expectedNodes` nodes and a controller.
 * Exit codes: 0 ready, 1 not ready before the timeout, 2 a watched process died.
 */
public class KafkaReady {
  private static final long ATTEMPT_TIMEOUT_MS = 2_000;

  public static void main(String[] args) throws InterruptedException {
    if (args.length < 3) {
      System.err.println("usage: KafkaReady <bootstrap> <timeoutMs> <expectedNodes> [pidToWatch...]");
      System.exit(64);
    }
    String bootstrap = args[0];
    long deadline = System.currentTimeMillis() + Long.parseLong(args[1]);
    int expectedNodes = Integer.parseInt(args[2]);
    List<ProcessHandle> watched = new ArrayList<>();
    for (int i = 3; i < args.length; i++) {
      Optional<ProcessHandle> handle = ProcessHandle.of(Long.parseLong(args[i]));
      if (handle.isEmpty()) exit(2, "process " + args[i] + " is not running");
      watched.add(handle.get());
    }

    Properties props = new Properties();
    props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(AdminClientConfig.CLIENT_ID_CONFIG, "kafka-ready-probe");
    props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, (int) ATTEMPT_TIMEOUT_MS);
    // Defaults back off up to 1 s between reconnects, which would add latency to every start.
    props.put(AdminClientConfig.RECONNECT_BACKOFF_MS_CONFIG, 50);
    props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, 200);
    props.put(AdminClientConfig.RETRY_BACKOFF_MS_CONFIG, 100);
    props.put(AdminClientConfig.RETRY_BACKOFF_MAX_MS_CONFIG, 200);

    Admin admin = Admin.create(props);
    String lastProblem = "no answer yet";
    while (true) {
      for (ProcessHandle handle : watched) {
        if (!handle.isAlive()) exit(2, "broker process " + handle.pid() + " exited");
      }
      long left = deadline - System.currentTimeMillis();
      if (left <= 0) exit(1, "not ready: " + lastProblem);
      try {
        DescribeClusterResult cluster =
            admin.describeCluster(
                new DescribeClusterOptions().timeoutMs((int) Math.min(left, ATTEMPT_TIMEOUT_MS)));
        Collection<Node> nodes = cluster.nodes().get();
        Node controller = cluster.controller().get();
        if (nodes.size() >= expectedNodes && controller != null && !controller.isEmpty()) {
          System.out.println(
              "cluster " + cluster.clusterId().get() + " nodes=" + nodes.size()
                  + " controller=" + controller.idString());
          exit(0, null);
        }
        lastProblem = "cluster reported nodes=" + nodes + " controller=" + controller;
      } catch (ExecutionException e) {
        lastProblem = e.getCause().toString();
      }
      Thread.sleep(100);
    }
  }

  private static void exit(int code, String message) {
    if (message != null) System.err.println(message);
    // No Admin.close(): it would wait for in-flight calls, and the process is ending anyway.
    System.exit(code);
  }
}
