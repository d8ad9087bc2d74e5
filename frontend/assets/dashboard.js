// The dashboard's only script: swap in the panels the server renders, as it sends them.
"use strict";

(function () {
  const connection = document.getElementById("connection");

  function show(state, text) {
    connection.className = "pill " + state;
    connection.textContent = text;
  }

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
  // EventSource reconnects by itself; until it does, say that the view is stale.
  events.addEventListener("error", function () {
    show("down", "reconnecting… (the view is stale)");
  });
})();
