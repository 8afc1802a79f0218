// Shared by the test upload pages: report what happened in #status (the drivers wait on it) and
// post files the way each kind of site does. `?as=NAME` posts to /upload/NAME instead of the
// page's own name, so one page can serve several scenarios the site tells apart.
window.uploadPage = {
  status(text) {
    document.getElementById('status').textContent = text;
  },
  async postForm(page, files) {
    const body = new FormData();
    for (const file of files) body.append('photo', file, file.name);
    const as = new URLSearchParams(location.search).get('as') ?? page;
    const response = await fetch(`/upload/${encodeURIComponent(as)}`, { method: 'POST', body });
    this.status(`uploaded ${files.length} (${response.status})`);
  },
};
