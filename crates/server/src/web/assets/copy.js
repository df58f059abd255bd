// Copy buttons: an enhancement only. Without JavaScript the buttons stay hidden and the
// short URL sits in a read-only field, ready to select.
"use strict";
document.querySelectorAll("button[data-copy]").forEach(function (button) {
  if (!navigator.clipboard) {
    return;
  }
  var status = document.getElementById(button.getAttribute("data-status"));
  button.hidden = false;
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(button.getAttribute("data-copy")).then(
      function () {
        if (status) {
          status.textContent = "Copied to the clipboard.";
        }
      },
      function () {
        if (status) {
          status.textContent = "Copying failed; select the link and copy it.";
        }
      }
    );
  });
});
