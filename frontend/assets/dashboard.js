// The dashboard's only script: swap in the panels the server renders, as it sends them.
"use strict";

(function () {
  const connection = document.getElementById("connection");

  function show(state, text) {
    connection.className = "pill " + state;
    connection.textContent = text;
  }

  function open() {
    const events = new EventSource("/dashboard/events");
    events.addEventListener("panels", function (message) {
      const panels = JSON.parse(message.data);
      for (const id of Object.keys(panels)) {
        const element = document.getElementById(id);
        if (element) {
          element.innerHTML = panels[id];
        }
      }
      show("up", "live");
    });
    // EventSource reconnects by itself after a broken stream (the server asks for
    // 1 s); until it does, say that the view is stale. It gives up for good on an
    // error reply (say, a load balancer with no front-end up): open a new one then.
    events.addEventListener("error", function () {
      show("down", "reconnecting… (the view is stale)");
      if (events.readyState === EventSource.CLOSED) {
        setTimeout(open, 2000);
      }
    });
  }

  open();
})();
