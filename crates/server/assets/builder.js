// Clarion dashboard: the segment builder. The visual editor shows the rule's JSON form as
// groups and conditions and writes it back to the form on every change; the Text tab holds
// the text form. Switching asks the server to convert (POST /segments/rule), so a rule
// that does not read stays where it was typed, with the problem shown. Nodes the editor
// has no controls for are kept as they are, shown in their JSON form.
(function () {
  "use strict";
  var form = document.getElementById("segment-form");
  var jsonField = document.getElementById("rule-json");
  var textField = document.getElementById("rule-text");
  var holder = document.getElementById("visual-rule");
  var modeField = document.getElementById("rule-mode");
  if (!form || !jsonField || !textField || !holder || !modeField) return;
  var switchError = document.getElementById("switch-error");
  var OPS = ["=", "!=", "<", "<=", ">", ">=", "between", "in", "not_in", "contains", "starts_with", "ends_with", "exists", "not_exists"];
  var KINDS = [["attr", "Attribute"], ["event", "Event"], ["trait", "Trait"], ["interest", "Interest"], ["segment", "In segment"]];
  var root = null;
  var counter = 0;

  function has(object, keys) {
    return Object.keys(object).every(function (k) { return keys.indexOf(k) >= 0; });
  }
  function scalarText(v) {
    if (v && typeof v === "object" && typeof v.ago === "string") return "ago(" + v.ago + ")";
    return typeof v === "string" ? v : JSON.stringify(v);
  }
  function valueText(v) {
    if (v === undefined) return "";
    return Array.isArray(v) ? v.map(scalarText).join(", ") : scalarText(v);
  }
  function parseScalar(text) {
    var t = text.trim();
    var ago = /^ago\((.+)\)$/.exec(t);
    if (ago) return { ago: ago[1].trim() };
    if (t === "true" || t === "false") return t === "true";
    if (t !== "" && !isNaN(Number(t))) return Number(t);
    var quoted = /^"(.*)"$/.exec(t);
    return quoted ? quoted[1] : t;
  }
  function parseValue(op, text) {
    if (op === "exists" || op === "not_exists") return undefined;
    if (op === "in" || op === "not_in" || op === "between") {
      return text.split(",").filter(function (s) { return s.trim() !== ""; }).map(parseScalar);
    }
    return parseScalar(text);
  }

  // JSON form -> editor nodes.
  function raw(json) { return { type: "raw", json: json, text: JSON.stringify(json) }; }
  function fromJson(v) {
    if (!v || typeof v !== "object" || Array.isArray(v)) return raw(v);
    if (Array.isArray(v.all) || Array.isArray(v.any)) {
      var join = v.all ? "all" : "any";
      if (!has(v, [join])) return raw(v);
      return { type: "group", join: join, negated: false, children: v[join].map(fromJson) };
    }
    if (v.not !== undefined && has(v, ["not"])) {
      var inner = fromJson(v.not);
      if (inner.type === "raw" || inner.negated) return raw(v);
      inner.negated = true;
      return inner;
    }
    var kind = ["attr", "trait", "interest"].filter(function (k) { return typeof v[k] === "string"; })[0];
    if (kind && has(v, [kind, "op", "value"])) {
      return { type: "cond", kind: kind, negated: false, name: v[kind], op: v.op,
        original: v.value, shown: valueText(v.value), value: valueText(v.value) };
    }
    if (typeof v.segment === "string" && has(v, ["segment"])) {
      return { type: "cond", kind: "segment", negated: false, name: v.segment, op: "=", value: "" };
    }
    if (typeof v.event === "string" && has(v, ["event", "within", "count"])
        && (v.within === undefined || typeof v.within === "string")
        && (v.count === undefined || (typeof v.count === "object" && typeof v.count.value === "number" && has(v.count, ["op", "value"])))) {
      return { type: "cond", kind: "event", negated: false, name: v.event, within: v.within || "",
        measure: v.count ? "count" : "performed", op: v.count ? v.count.op : ">=",
        value: v.count ? String(v.count.value) : "1" };
    }
    return raw(v);
  }

  // Editor nodes -> JSON form.
  function toJson(node) {
    var out;
    if (node.type === "raw") {
      try { out = JSON.parse(node.text); } catch (e) { out = node.text; }
    } else if (node.type === "group") {
      // A top-level "all" of one rule is that rule: the text form then reads as typed.
      if ((node.wrapped || node === root) && node.children.length === 1 && node.join === "all" && !node.negated) {
        return toJson(node.children[0]);
      }
      out = {};
      out[node.join] = node.children.map(toJson);
    } else if (node.kind === "segment") {
      out = { segment: node.name };
    } else if (node.kind === "event") {
      out = { event: node.name };
      if (node.within.trim() !== "") out.within = node.within.trim();
      if (node.measure === "count") out.count = { op: node.op, value: Number(node.value) };
    } else {
      out = {};
      out[node.kind] = node.name;
      out.op = node.op;
      var value = node.value === node.shown ? node.original : parseValue(node.op, node.value);
      if (value !== undefined && node.op !== "exists" && node.op !== "not_exists") out.value = value;
    }
    return node.negated ? { not: out } : out;
  }

  function changed(rebuild) {
    jsonField.value = JSON.stringify(toJson(root));
    if (rebuild) render();
    document.body.dispatchEvent(new Event("rule-changed"));
  }

  function control(tag, label, props) {
    var element = document.createElement(tag);
    element.id = "rb-" + (++counter);
    element.setAttribute("aria-label", label);
    Object.keys(props || {}).forEach(function (k) { element[k] = props[k]; });
    return element;
  }
  function select(label, options, value, onChange) {
    var element = control("select", label);
    options.forEach(function (o) {
      var option = document.createElement("option");
      option.value = Array.isArray(o) ? o[0] : o;
      option.textContent = Array.isArray(o) ? o[1] : o;
      element.appendChild(option);
    });
    element.value = value;
    element.addEventListener("change", function () { onChange(element.value); });
    return element;
  }
  function input(label, value, placeholder, onInput) {
    var element = control("input", label, { type: "text", value: value, placeholder: placeholder || "" });
    element.addEventListener("input", function () { onInput(element.value); changed(false); });
    return element;
  }
  function button(text, label, onClick, extra) {
    var element = document.createElement("button");
    element.type = "button";
    element.textContent = text;
    element.setAttribute("aria-label", label);
    if (extra) element.className = extra;
    element.addEventListener("click", onClick);
    return element;
  }
  function notBox(node) {
    var wrap = document.createElement("label");
    wrap.className = "not";
    var box = document.createElement("input");
    box.type = "checkbox";
    box.checked = !!node.negated;
    box.addEventListener("change", function () { node.negated = box.checked; changed(false); });
    wrap.appendChild(box);
    wrap.appendChild(document.createTextNode(" not"));
    return wrap;
  }
  function newCondition() {
    return { type: "cond", kind: "attr", negated: false, name: "", op: "=", value: "", within: "", measure: "performed" };
  }

  function renderCondition(node, remove) {
    var row = document.createElement("div");
    row.className = "condition";
    row.setAttribute("role", "group");
    row.setAttribute("aria-label", "Condition");
    row.appendChild(notBox(node));
    if (node.type === "raw") {
      row.appendChild(input("Condition in JSON form", node.text, "", function (v) { node.text = v; }));
    } else {
      row.appendChild(select("Kind of condition", KINDS, node.kind, function (v) {
        node.kind = v;
        if (v === "event") { node.measure = "performed"; node.within = node.within || ""; }
        node.original = undefined; node.shown = undefined;
        changed(true);
      }));
      var names = { attr: ["Attribute", "country"], event: ["Event", "purchase"], trait: ["Trait", "rfm_segment"], interest: ["Interest category", "books"], segment: ["Segment slug", "vip-customers"] };
      row.appendChild(input(names[node.kind][0] + " name", node.name, names[node.kind][1], function (v) { node.name = v; }));
      if (node.kind === "event") {
        row.appendChild(input("Within (e.g. 90d; empty for ever)", node.within || "", "within, e.g. 90d", function (v) { node.within = v; }));
        row.appendChild(select("Measure", [["performed", "performed"], ["count", "count"]], node.measure, function (v) { node.measure = v; changed(true); }));
        if (node.measure === "count") {
          row.appendChild(select("Count comparison", ["=", "!=", "<", "<=", ">", ">="], node.op, function (v) { node.op = v; changed(false); }));
          row.appendChild(input("Count", node.value, "3", function (v) { node.value = v; }));
        }
      } else if (node.kind !== "segment") {
        row.appendChild(select("Comparison", OPS, node.op, function (v) { node.op = v; changed(true); }));
        if (node.op !== "exists" && node.op !== "not_exists") {
          row.appendChild(input("Value", node.value, node.op === "in" || node.op === "not_in" || node.op === "between" ? "a, b" : "value", function (v) { node.value = v; }));
        }
      }
    }
    row.appendChild(button("Remove", "Remove this condition", remove, "danger"));
    return row;
  }

  function renderGroup(node, remove) {
    var box = document.createElement("fieldset");
    box.className = "group";
    var legend = document.createElement("legend");
    legend.appendChild(document.createTextNode("Match "));
    legend.appendChild(select("Match all or any", [["all", "all"], ["any", "any"]], node.join, function (v) { node.join = v; node.wrapped = false; changed(false); }));
    legend.appendChild(document.createTextNode(" of these"));
    box.appendChild(legend);
    box.appendChild(notBox(node));
    var list = document.createElement("div");
    list.className = "children";
    node.children.forEach(function (child, index) {
      var drop = function () { node.children.splice(index, 1); changed(true); };
      list.appendChild(child.type === "group" ? renderGroup(child, drop) : renderCondition(child, drop));
    });
    if (node.children.length === 0) {
      var empty = document.createElement("p");
      empty.className = "hint";
      empty.textContent = "No condition yet: every contact matches.";
      list.appendChild(empty);
    }
    box.appendChild(list);
    var actions = document.createElement("p");
    actions.className = "group-actions";
    actions.appendChild(button("Add condition", "Add condition to this group", function () {
      node.children.push(newCondition()); node.wrapped = false; changed(true);
    }));
    actions.appendChild(button("Add group", "Add group inside this group", function () {
      node.children.push({ type: "group", join: "any", negated: false, children: [newCondition()] });
      node.wrapped = false; changed(true);
    }));
    if (remove) actions.appendChild(button("Remove group", "Remove this group", remove, "danger"));
    box.appendChild(actions);
    return box;
  }

  function render() {
    var focused = document.activeElement && holder.contains(document.activeElement) ? document.activeElement.getAttribute("aria-label") : null;
    holder.textContent = "";
    counter = 0;
    holder.appendChild(renderGroup(root, null));
    if (focused) {
      var again = holder.querySelector("[aria-label=\"" + focused.replace(/"/g, "") + "\"]");
      if (again) again.focus();
    }
  }

  function load(json) {
    var node = fromJson(json);
    if (node.type !== "group" || node.negated) {
      node = { type: "group", join: "all", negated: false, children: [node], wrapped: true };
    }
    root = node;
    render();
  }

  function showProblem(problem) {
    switchError.textContent = "";
    var line = document.createElement("span");
    line.textContent = "The rule could not be switched: " + problem.message;
    switchError.appendChild(line);
    if (problem.mark) {
      var pre = document.createElement("pre");
      pre.className = "rule-mark";
      var code = document.createElement("code");
      code.appendChild(document.createTextNode(problem.mark.before));
      var mark = document.createElement("mark");
      mark.textContent = problem.mark.at;
      code.appendChild(mark);
      code.appendChild(document.createTextNode(problem.mark.after));
      pre.appendChild(code);
      switchError.appendChild(pre);
      selectPosition(problem.mark.line, problem.mark.column);
    }
    switchError.hidden = false;
  }

  // Puts the text cursor on the character a problem points at.
  function selectPosition(line, column) {
    var lines = textField.value.split("\n");
    var offset = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
    offset += column - 1;
    textField.focus();
    textField.setSelectionRange(offset, Math.min(offset + 1, textField.value.length));
  }

  function show(mode) {
    modeField.value = mode;
    document.getElementById("panel-visual").hidden = mode !== "visual";
    document.getElementById("panel-text").hidden = mode !== "text";
    document.getElementById("tab-visual").setAttribute("aria-selected", mode === "visual" ? "true" : "false");
    document.getElementById("tab-text").setAttribute("aria-selected", mode === "text" ? "true" : "false");
  }

  function switchTo(mode) {
    if (modeField.value === mode) return;
    fetch("/segments/rule", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(new FormData(form))
    }).then(function (response) {
      return response.json().then(function (body) { return { ok: response.ok, body: body }; });
    }).then(function (answer) {
      if (!answer.ok) { showProblem(answer.body.problem); return; }
      switchError.hidden = true;
      textField.removeAttribute("aria-invalid");
      if (mode === "text") {
        textField.value = answer.body.text;
      } else {
        jsonField.value = JSON.stringify(answer.body.json);
        load(answer.body.json);
      }
      show(mode);
      document.body.dispatchEvent(new Event("rule-changed"));
    }).catch(function () {
      switchError.textContent = "The server could not be reached; nothing was changed.";
      switchError.hidden = false;
    });
  }

  document.getElementById("tab-visual").addEventListener("click", function () { switchTo("visual"); });
  document.getElementById("tab-text").addEventListener("click", function () { switchTo("text"); });
  var initial;
  try { initial = JSON.parse(jsonField.value || "{\"all\": []}"); } catch (e) { initial = { all: [] }; }
  load(initial);
})();
