"""A client: call methods, then follow the daemon's events."""
from gdaemon.client import Client

with Client("unix://daemon.sock") as client:
    print(client.hello.greet(name="client"))
    print(client.call("worker.status", "counter"))
    events = client.subscribe(["worker.state"], timeout=10)
    client.call("worker.restart", "counter")
    for event in events:
        print(event["data"]["name"], event["data"]["status_name"])
        if event["data"]["status_name"] == "LOOPING":
            break
