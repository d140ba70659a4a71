// The view switcher: the WAI-ARIA tabs pattern. Tab moves into the tab list and out to the
// panel; Left/Right (and Home/End) move between tabs and show them; Enter/Space show too.
const VIEW_SLOT = "engram.view";

export class Tabs {
  /** `list` is the role=tablist element; `onShow(name)` runs when a view is shown. */
  constructor(list, onShow) {
    this.tabs = [...list.querySelectorAll("[role=tab]")];
    this.onShow = onShow;
    for (const tab of this.tabs) {
      tab.addEventListener("click", () => this.show(tab.dataset.view, { focus: true }));
      tab.addEventListener("keydown", (event) => this.key(event, tab));
    }
  }

  get current() {
    const tab = this.tabs.find((one) => one.getAttribute("aria-selected") === "true");
    return tab ? tab.dataset.view : null;
  }

  /** The view of the last visit (this tab of the browser), else the first. */
  restore() {
    const saved = sessionStorage.getItem(VIEW_SLOT);
    const known = this.tabs.some((tab) => tab.dataset.view === saved);
    this.show(known ? saved : this.tabs[0].dataset.view);
  }

  show(name, { focus = false } = {}) {
    for (const tab of this.tabs) {
      const selected = tab.dataset.view === name;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
      document.getElementById(tab.getAttribute("aria-controls")).hidden = !selected;
      if (selected && focus) tab.focus();
    }
    sessionStorage.setItem(VIEW_SLOT, name);
    this.onShow(name);
  }

  key(event, tab) {
    const index = this.tabs.indexOf(tab);
    const last = this.tabs.length - 1;
    const target = {
      ArrowRight: index === last ? 0 : index + 1,
      ArrowLeft: index === 0 ? last : index - 1,
      Home: 0,
      End: last,
    }[event.key];
    if (target !== undefined) {
      event.preventDefault();
      this.show(this.tabs[target].dataset.view, { focus: true });
    } else if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      this.show(tab.dataset.view, { focus: true });
    }
  }
}
