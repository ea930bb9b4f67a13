/* The Data page's upload. dcc.Upload ("#data-file") is the drop zone and the file chooser only: the
   chosen or dropped file is taken here, before dcc.Upload would read it into the page as base64 and
   send it through a callback, and goes to POST /upload as it is: the browser streams it from disk and
   the server writes it to disk a chunk at a time. A progress bar shows how much is sent; then the page
   is told which upload it was (the "data-uploaded" store), or why the file was not taken. Listening
   on the document in the capture phase runs before React's own listeners, which then never see it. */
(function () {
  function csrfToken() {
    var match = document.cookie.match(/(?:^|; )_csrf_token=([^;]*)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function tell(data) {
    data.at = Date.now();  // a new value even for the same answer twice
    window.dash_clientside.set_props("data-uploaded", {data: data});
  }

  function megabytes(bytes) {
    return (bytes / 1048576).toFixed(bytes < 10485760 ? 1 : 0) + " MB";
  }

  function send(file, zone) {
    var holder = zone.closest("[data-max-bytes]");
    var limit = holder ? Number(holder.getAttribute("data-max-bytes")) : 0;
    if (limit && file.size > limit) {
      tell({error: file.name + " is " + megabytes(file.size) + ": the most a file may be is " + megabytes(limit) +
                   ". Split it, or compress it (.csv.gz)."});
      return;
    }
    var progress = document.getElementById("data-upload-progress");
    var request = new XMLHttpRequest();
    request.open("POST", "/upload");
    request.setRequestHeader("X-CSRFToken", csrfToken());
    request.setRequestHeader("X-File-Name", encodeURIComponent(file.name));
    request.setRequestHeader("Content-Type", "application/octet-stream");
    if (progress) {
      progress.hidden = false;
      progress.value = 0;
      progress.textContent = "0%";
    }
    request.upload.onprogress = function (event) {
      if (progress && event.lengthComputable) {
        progress.value = Math.round(100 * event.loaded / event.total);
        progress.textContent = progress.value + "%";
      }
    };
    request.onload = function () {
      if (progress) { progress.hidden = true; }
      var body = {};
      try { body = JSON.parse(request.responseText); } catch (ignored) { body = {}; }
      if (request.status === 200) {
        tell(body);
      } else {
        tell({error: (body.error && body.error.message) ||
                     "The file could not be sent (the server answered " + request.status + "). Please try again."});
      }
    };
    request.onerror = function () {
      if (progress) { progress.hidden = true; }
      tell({error: "The file could not be sent: the connection to the server was lost. Please try again."});
    };
    request.send(file);
  }

  function zoneOf(target) {
    var zone = target && target.closest ? target.closest(".upload-zone") : null;
    return zone && zone.closest("#data-file, [id='data-file']") ? zone : null;
  }

  function taken(event) {
    event.preventDefault();
    event.stopPropagation();
  }

  document.addEventListener("change", function (event) {
    var input = event.target;
    var zone = zoneOf(input);
    if (zone && input.files && input.files.length) {
      taken(event);
      send(input.files[0], zone);
      input.value = "";  // choosing the same file again sends it again
    }
  }, true);
  ["dragenter", "dragover"].forEach(function (kind) {
    document.addEventListener(kind, function (event) {
      var zone = zoneOf(event.target);
      if (zone) {
        taken(event);
        zone.classList.add("dragging");
      }
    }, true);
  });
  document.addEventListener("dragleave", function (event) {
    var zone = zoneOf(event.target);
    if (zone) { zone.classList.remove("dragging"); }
  }, true);
  document.addEventListener("drop", function (event) {
    var zone = zoneOf(event.target);
    if (zone && event.dataTransfer && event.dataTransfer.files.length) {
      taken(event);
      zone.classList.remove("dragging");
      send(event.dataTransfer.files[0], zone);
    }
  }, true);
})();
