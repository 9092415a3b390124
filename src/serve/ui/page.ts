/** The explorer's HTML and CSS (no external resources); the behaviour is in ./browser/app.ts, served as /ui/app.js. */
export const EXPLORER_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>deltarec explorer</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
  header { display: flex; gap: 1rem; align-items: center; padding: .6rem 1rem; background: #1d2330; color: #fff; }
  header h1 { font-size: 1.1rem; margin: 0; flex: 1; }
  header input { width: 16rem; }
  main { display: grid; grid-template-columns: 22rem 1fr; gap: 1rem; padding: 1rem; }
  section { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; padding: .7rem; margin-bottom: 1rem; }
  h2 { font-size: .95rem; margin: 0 0 .5rem; }
  ul { list-style: none; margin: 0; padding: 0; }
  li.item { display: flex; gap: .5rem; align-items: center; padding: .3rem; border-bottom: 1px solid #eef0f3; }
  #search-results li.item { cursor: pointer; }
  #search-results li.item:hover { background: #eef4ff; }
  li.item img { width: 40px; height: 40px; object-fit: cover; border-radius: 4px; background: #eee; }
  .meta { flex: 1; min-width: 0; }
  .title { font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .id, .terms { color: #667085; font-size: .8rem; }
  .rank { width: 1.6rem; text-align: right; color: #667085; font-variant-numeric: tabular-nums; }
  ol.results { margin: 0; padding: 0; }
  .score { font-variant-numeric: tabular-nums; color: #344054; }
  .badge { font-size: .7rem; padding: 0 .35rem; border-radius: 3px; background: #d1fadf; color: #05603a; }
  .badge.cold { background: #dbeafe; color: #1e40af; }
  .badge.added { background: #fef0c7; color: #93370d; }
  #models { display: grid; grid-template-columns: repeat(auto-fit, minmax(20rem, 1fr)); gap: 1rem; }
  .model h2 small { color: #667085; font-weight: normal; }
  input, textarea, button, select { font: inherit; }
  input[type=text], input[type=search], input[type=password], textarea { box-sizing: border-box; width: 100%; }
  textarea { height: 3.2rem; }
  form label { display: block; margin-top: .3rem; font-size: .85rem; }
  #status { color: #667085; }
  #status.error { color: #b42318; }
  button.remove { border: none; background: none; color: #b42318; cursor: pointer; }
</style>
</head>
<body>
<header>
  <h1>deltarec explorer</h1>
  <label>token <input id="token" type="password" placeholder="bearer token (if the service has one)" autocomplete="off"></label>
  <button id="token-save" type="button">use</button>
</header>
<main>
  <div>
    <section>
      <h2>Catalog</h2>
      <input id="search" type="search" placeholder="search by title or id">
      <ul id="search-results"></ul>
    </section>
    <section>
      <h2>History <small>(oldest first)</small></h2>
      <ul id="history"></ul>
      <textarea id="paste" placeholder="paste item ids (comma, space or newline separated)"></textarea>
      <button id="paste-add" type="button">add ids</button>
      <button id="clear" type="button">clear</button>
      <label>top-k <input id="k" type="number" min="1" max="100" value="10" style="width:4rem"></label>
    </section>
    <section>
      <h2>Add an item</h2>
      <form id="add-form"></form>
    </section>
    <p id="status"></p>
  </div>
  <div id="models"></div>
</main>
<script type="module" src="/ui/app.js"></script>
</body>
</html>
`;
