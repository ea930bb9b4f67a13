/* Accessibility repairs for Dash's own components, applied whenever they render:
   - dcc.Dropdown (Dash 4) takes keyboard focus on a hidden, unlabelled input marked aria-hidden
     (axe: "aria-hidden-focus", serious): it is shown to assistive technology and named after the
     dropdown's label instead;
   - dcc.Upload's file input has no label: it is named after the upload zone's text. */
(function () {
  function repair(root) {
    root.querySelectorAll(".dash-dropdown-focus-target[aria-hidden]").forEach(function (input) {
      var button = input.parentElement && input.parentElement.querySelector("button[id]");
      var label = button && Array.prototype.find.call(document.querySelectorAll("label"), function (l) {
        return l.htmlFor === button.id;
      });
      input.removeAttribute("aria-hidden");
      input.setAttribute("aria-label", label ? label.textContent : (button ? button.textContent : "Choose"));
    });
    root.querySelectorAll(".upload-zone input[type=file]:not([aria-label])").forEach(function (input) {
      input.setAttribute("aria-label", input.closest(".upload-zone").textContent.trim() || "Choose a file");
    });
  }
  new MutationObserver(function () { repair(document); })
    .observe(document.documentElement, {childList: true, subtree: true});
})();
